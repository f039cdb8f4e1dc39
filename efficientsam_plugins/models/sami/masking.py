"""Per-sample random token masks that are a pure function of (seed, step, sample id).

MAE-style masking usually draws from the global RNG, so a resumed run or a multi-process run
masks differently from one uninterrupted single-process run. Hashing (seed, step, sample id,
token) instead gives every sample the same mask whatever the process, batch composition or
restart, and it runs as a few vectorised integer ops on any device.
"""
from typing import Union

import torch

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 tensors (multiplication wraps around)."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def check_mask_ratio(mask_ratio: float) -> float:
    """``mask_ratio`` as a float, or a ValueError unless it lies strictly between 0 and 1."""
    ratio = float(mask_ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f'mask_ratio must lie strictly between 0 and 1, got {mask_ratio}')
    return ratio


def num_visible_tokens(num_tokens: int, mask_ratio: float) -> int:
    """Tokens kept visible per sample (at least one, at most ``num_tokens - 1``)."""
    ratio = check_mask_ratio(mask_ratio)
    return min(max(int(round(num_tokens * (1.0 - ratio))), 1), num_tokens - 1)


def random_token_mask(sample_ids: torch.Tensor, step: int, num_tokens: int, mask_ratio: float,
                      seed: Union[int, torch.Tensor] = 0) -> torch.Tensor:
    """Bool mask ``[B, num_tokens]``, True where a token is masked, the same count per sample.

    Args:
        sample_ids: int64 ``[B]`` identifying each sample (its dataset index).
        step: the training step (e.g. the global iteration), so masks change between visits.
        num_tokens: tokens per image.
        mask_ratio: fraction of masked tokens, in (0, 1).
        seed: run seed (an int, or an int64 scalar tensor so that it can live on the device).
    """
    if num_tokens < 2:
        raise ValueError(f'masking needs at least 2 tokens per image, got {num_tokens}')
    keep = num_visible_tokens(num_tokens, mask_ratio)
    if sample_ids.ndim != 1:
        raise ValueError(f'sample_ids must be 1-D [B], got shape {tuple(sample_ids.shape)}')
    ids = sample_ids.to(torch.int64)
    seed = torch.as_tensor(_signed(seed) if isinstance(seed, int) else seed, dtype=torch.int64,
                           device=ids.device)
    key = splitmix64(seed.expand_as(ids))
    key = splitmix64(key ^ _signed(step))
    key = splitmix64(key ^ ids)
    tokens = torch.arange(num_tokens, device=ids.device, dtype=torch.int64)
    scores = splitmix64(key[:, None] ^ (tokens[None, :] * _GOLDEN))
    ranks = torch.argsort(torch.argsort(scores, dim=1), dim=1)
    return ranks >= keep
