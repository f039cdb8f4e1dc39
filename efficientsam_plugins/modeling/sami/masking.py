"""Per-sample random token masks that are a pure function of (seed, step, sample id).

MAE-style masking usually draws from the global RNG, so a resumed run or a multi-process run
masks differently from one uninterrupted single-process run. Hashing (seed, step, sample id,
token) instead gives every sample the same mask whatever the process, batch composition or
restart, and it runs as a few vectorised integer ops on any device.
"""
from typing import Union

import torch


def _signed(value: int) -> int:
    """``value`` modulo 2**64 as an int64 (torch has no uint64 arithmetic)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 tensors (multiplication wraps around).

    Args:
        x: int64 tensor.

    Returns:
        Its hash, elementwise.
    """
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def check_mask_ratio(mask_ratio: float) -> float:
    """A masking ratio, checked.

    Args:
        mask_ratio: the fraction of tokens masked.

    Returns:
        It as a float.

    Raises:
        ValueError: unless it lies strictly between 0 and 1.
    """
    ratio = float(mask_ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f'mask_ratio must lie strictly between 0 and 1, got {mask_ratio}')
    return ratio


def random_token_mask(sample_ids: torch.Tensor, step: int, num_tokens: int, mask_ratio: float,
                      seed: Union[int, torch.Tensor] = 0) -> torch.Tensor:
    """Random token masks, the same count per sample, a pure function of the arguments.

    Args:
        sample_ids: int64 ``[B]``, e.g. dataset indices.
        step: the global iteration.
        num_tokens: tokens per image (at least 2).
        mask_ratio: the fraction masked, strictly between 0 and 1 (at least one token stays visible
            and one masked).
        seed: an int, or an int64 scalar tensor so that it can live on the device.

    Returns:
        Bool ``[B, num_tokens]``, True where masked.

    Raises:
        ValueError: for fewer than 2 tokens, ``sample_ids`` that are not 1-D, or a bad ratio.
    """
    if num_tokens < 2:
        raise ValueError(f'masking needs at least 2 tokens per image, got {num_tokens}')
    if sample_ids.ndim != 1:
        raise ValueError(f'sample_ids must be 1-D [B], got shape {tuple(sample_ids.shape)}')
    keep = min(max(round(num_tokens * (1.0 - check_mask_ratio(mask_ratio))), 1), num_tokens - 1)
    ids = sample_ids.to(torch.int64)
    seed = torch.as_tensor(_signed(seed) if isinstance(seed, int) else seed, dtype=torch.int64,
                           device=ids.device)
    key = splitmix64(splitmix64(splitmix64(seed.expand_as(ids)) ^ _signed(step)) ^ ids)
    tokens = torch.arange(num_tokens, device=ids.device, dtype=torch.int64)
    scores = splitmix64(key[:, None] ^ (tokens[None, :] * _GOLDEN))
    return torch.argsort(torch.argsort(scores, dim=1), dim=1) >= keep
