"""SAMI's cross-attention decoder, built from the core ViT's attention, MLP and drop-path."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention import dot_product_attention
from ..vit import Attention, DropPath, Mlp


def sincos_pos_embed_2d(grid_hw: Tuple[int, int], dim: int, device=None,
                        dtype=torch.float32) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding in raster order (MAE's).

    Args:
        grid_hw: the ``(H, W)`` token grid.
        dim: channels (divisible by 4).
        device: the embedding's device.
        dtype: the embedding's dtype (computed in float64).

    Returns:
        ``[H*W, dim]``.

    Raises:
        ValueError: when 4 does not divide ``dim``.
    """
    if dim % 4:
        raise ValueError(f'the sine-cosine position embedding needs a dim divisible by 4, got {dim}')
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(*(torch.arange(n, device=device, dtype=torch.float64) for n in grid_hw),
                            indexing='ij')
    out_w, out_h = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1).to(dtype)


class CrossAttention(Attention):
    """The core :class:`Attention` with queries and keys/values from different token sets: the
    first third of ``qkv`` projects the queries, the rest the keys and values."""

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attention of ``queries`` ``[B, M, C]`` to the ``context`` tokens ``[B, N, C]``; returns ``[B, M, C]``."""
        b, m, c = queries.shape
        heads = self.num_heads
        weight_q, weight_kv = self.qkv.weight.split([c, 2 * c])
        bias_q, bias_kv = (None, None) if self.qkv.bias is None else self.qkv.bias.split([c, 2 * c])
        q = F.linear(queries, weight_q, bias_q).view(b, m, heads, c // heads).transpose(1, 2)
        kv = F.linear(context, weight_kv, bias_kv).view(b, context.shape[1], 2, heads, c // heads)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(dot_product_attention(q, k, v).transpose(1, 2).reshape(b, m, c))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block whose queries (masked tokens) attend to visible + masked tokens.

    Args:
        dim: channels.
        num_heads: attention heads.
        mlp_ratio: the MLP's hidden width over ``dim``.
        qkv_bias: biases in the q/k/v projection.
        drop_path: stochastic-depth probability.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, queries: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """One block.

        Args:
            queries: ``[B, M, C]`` masked tokens, updated.
            visible: ``[B, N, C]`` visible tokens, which only supply keys and values.

        Returns:
            ``[B, M, C]``.
        """
        context = self.norm1(torch.cat([visible, queries], dim=1))
        queries = queries + self.drop_path(self.attn(context[:, visible.shape[1]:].contiguous(), context))
        return queries + self.drop_path(self.mlp(self.norm2(queries)))


class CrossAttentionDecoder(nn.Module):
    """Decodes the masked tokens from the encoder's visible tokens (SAMI, EfficientSAM paper).

    Masked tokens (a learned mask token plus a fixed 2-D sine-cosine position) are the queries;
    keys and values are the visible tokens (the encoder's, projected to the decoder width) plus
    the masked tokens. Both are merged back into raster order and normalised. The paper uses
    ``embed_dim=512``, ``depth=8``.

    Args:
        in_channels: channels of the encoder's tokens.
        embed_dim: the decoder's width.
        depth: blocks (at least 1).
        num_heads: attention heads.
        mlp_ratio: the MLPs' hidden width over ``embed_dim``.
        qkv_bias: biases in the q/k/v projections.
        drop_path_rate: stochastic depth, rising linearly to this over the blocks.

    Raises:
        ValueError: for ``depth`` below 1.
    """

    def __init__(self, in_channels: int, embed_dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f'the decoder needs at least one block, got depth={depth}')
        self.in_channels, self.embed_dim = in_channels, embed_dim
        self.decoder_embed = nn.Linear(in_channels, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList(CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, rate)
                                    for rate in torch.linspace(0, drop_path_rate, depth).tolist())
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.init_weights()

    def init_weights(self) -> None:
        """MAE's decoder initialisation: normal mask token, Xavier-uniform linear weights."""
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def forward(self, visible: torch.Tensor, ids_visible: torch.Tensor, mask: torch.Tensor,
                grid_hw: Tuple[int, int]) -> torch.Tensor:
        """The tokens of every position, decoded from the visible ones.

        Args:
            visible: ``[B, N, in_channels]`` the encoder's visible tokens.
            ids_visible: ``[B, N]`` their raster positions.
            mask: bool ``[B, H*W]``, True where masked (the same count per sample).
            grid_hw: the ``(H, W)`` token grid.

        Returns:
            ``[B, H*W, embed_dim]`` in raster order, normalised.

        Raises:
            ValueError: for inputs whose shapes do not agree.
        """
        b, n, c = visible.shape
        num_tokens = grid_hw[0] * grid_hw[1]
        if c != self.in_channels:
            raise ValueError(f'visible tokens have {c} channels, the decoder expects {self.in_channels}')
        if mask.shape != (b, num_tokens) or ids_visible.shape != (b, n):
            raise ValueError(f'mask {tuple(mask.shape)} / ids_visible {tuple(ids_visible.shape)} do '
                             f'not match {b} samples, {n} visible tokens and grid {tuple(grid_hw)}')
        pos = sincos_pos_embed_2d(grid_hw, self.embed_dim, visible.device, visible.dtype)
        ids_masked = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :num_tokens - n]
        visible = self.decoder_embed(visible) + pos[ids_visible]
        queries = self.mask_token.to(visible.dtype) + pos[ids_masked]
        for block in self.blocks:
            queries = block(queries, visible)
        ids_restore = torch.argsort(torch.cat([ids_visible, ids_masked], dim=1), dim=1)
        merged = torch.gather(torch.cat([visible, queries], dim=1), 1,
                              ids_restore[..., None].expand(-1, -1, self.embed_dim))
        return self.norm(merged)
