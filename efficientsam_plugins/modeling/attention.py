"""All attention of the core: ``F.scaled_dot_product_attention`` (fused kernels, no materialised
attention matrix), or, within :func:`eager_attention`, the official code's explicit
``softmax(q @ k^T * scale) @ v``, so benchmarks can compare the two in one process."""
import contextlib
import contextvars
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

_EAGER = contextvars.ContextVar('efficientsam_plugins_eager_attention', default=False)


@contextlib.contextmanager
def eager_attention(enabled: bool = True) -> Iterator[None]:
    """Within this context, attention is computed explicitly instead of by the fused kernel.

    Args:
        enabled: False restores the fused kernel within the context (e.g. to nest one).
    """
    token = _EAGER.set(enabled)
    try:
        yield
    finally:
        _EAGER.reset(token)


def dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Scaled dot-product attention; under ``torch.compile`` / ``torch.export`` always the fused
    kernel (dynamo cannot read a ContextVar).

    Args:
        q: ``[..., T, D]`` queries.
        k: ``[..., S, D]`` keys.
        v: ``[..., S, D]`` values.
        bias: additive attention bias broadcastable to ``[..., T, S]``, or None.

    Returns:
        ``[..., T, D]``.
    """
    if not torch.compiler.is_compiling() and _EAGER.get():
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if bias is not None:
            attn = attn + bias
        return attn.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
