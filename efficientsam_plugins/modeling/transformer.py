"""SAM's two-way transformer and MLP heads, shared by EfficientSAM and SqueezeSAM (official key names).

Prompt tokens are ``[B, Q, N, C]``; image tokens start as ``[B, 1, HW, C]``, shared by the Q queries
of an image, and become ``[B, Q, HW, C]`` once the first image-to-token attention has updated them
per query. Attention against shared image tokens never tiles the image Q times.
"""
import math
from typing import Optional, Sequence, Tuple, Type

import torch
import torch.nn as nn

from .attention import dot_product_attention


class MLPBlock(nn.Module):
    """``num_layers`` x (Linear + activation) then a Linear ``fc`` (official parameter names).

    Args:
        input_dim: input features.
        hidden_dim: width of the hidden layers.
        output_dim: output features.
        num_layers: hidden layers (Linear + activation) before ``fc``.
        act: the activation.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 act: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * num_layers
        self.layers = nn.Sequential(*(nn.Sequential(nn.Linear(dims[i], dims[i + 1]), act())
                                      for i in range(num_layers)))
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., input_dim]`` to ``[..., output_dim]``."""
        return self.fc(self.layers(x))


def hypernetwork_masks(mlps: Sequence[nn.Module], tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The hypernetwork heads of SAM's mask decoders: mask ``i`` is ``mlps[i](tokens[:, i])`` dotted
    with every pixel's features.

    Args:
        mlps: one MLP per mask token, ``C`` to ``c`` features.
        tokens: ``[n, M, C]`` mask tokens.
        features: ``[n, c, h, w]`` upscaled image features.

    Returns:
        ``[n, M, h, w]`` mask logits.
    """
    n, c, h, w = features.shape
    weights = torch.stack([mlp(tokens[:, i]) for i, mlp in enumerate(mlps)], dim=1)
    return (weights @ features.view(n, c, h * w)).view(n, -1, h, w)


class TwoWayAttention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by ``downsample_rate``.

    Inputs are ``[B, Q, T, C]``; ``shared`` names the input that is one set per image (query axis
    1) for all Q queries: ``'keys'`` (k and v), ``'queries'`` (q) or None. Callers know it from the
    model's structure, so no path depends on Q and a graph traced with one Q holds for every Q.

    Args:
        embedding_dim: channels of the inputs and the output.
        num_heads: attention heads.
        downsample_rate: the q/k/v projections map to ``embedding_dim // downsample_rate`` channels.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f'{num_heads} heads do not divide the attention width {self.internal_dim}')
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        # Xavier-uniform with fan_out = 3 * internal_dim, as PyTorch initialises a fused qkv.
        bound = math.sqrt(6 / (self.embedding_dim + 3 * self.internal_dim))
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.uniform_(proj.weight, -bound, bound)
            nn.init.zeros_(proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, Q, T, D]`` -> ``[B*Q, heads, T, D/heads]``, a view."""
        b, n, t, d = x.shape
        return x.view(b * n, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """``[B*Q, heads, T, D/heads]`` -> ``out_proj`` of ``[B, Q, T, D]``."""
        t = x.shape[2]
        return self.out_proj(x.transpose(1, 2).reshape(b, -1, t, self.internal_dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                shared: Optional[str] = None) -> torch.Tensor:
        """Attention of ``q`` to ``k``/``v``.

        Args:
            q: ``[B, Q, T, C]`` queries (``[B, 1, T, C]`` when ``shared='queries'``).
            k: ``[B, Q, S, C]`` keys (``[B, 1, S, C]`` when ``shared='keys'``).
            v: values, shaped as ``k``.
            shared: which input is one set per image: ``'keys'``, ``'queries'`` or None.

        Returns:
            ``[B, Q, T, C]``: per query, whichever input was shared.
        """
        b, nq, t = q.shape[:3]
        if shared == 'queries':
            # The einsums broadcast the shared image tokens instead of copying them per query.
            heads = self._split_heads(self.q_proj(q)) * (self.internal_dim // self.num_heads) ** -0.5
            keys = self._split_heads(self.k_proj(k)).unflatten(0, (b, -1))
            values = self._split_heads(self.v_proj(v)).unflatten(0, (b, -1))
            attn = torch.einsum('bhtd,bqhsd->bqhts', heads, keys).softmax(dim=-1)
            return self._merge_heads(torch.einsum('bqhts,bqhsd->bqhtd', attn, values).flatten(0, 1), b)
        if shared is None and t * self.num_heads < self.internal_dim < k.shape[2]:
            return self._few_tokens_to_many_keys(q, k, v)
        if shared == 'keys':  # fold the queries into the token axis: one attention against the image's keys
            q = q.reshape(b, 1, nq * t, q.shape[3])
        out = dot_product_attention(self._split_heads(self.q_proj(q)), self._split_heads(self.k_proj(k)),
                                    self._split_heads(self.v_proj(v)))
        return self._merge_heads(out, b).view(b, nq, t, self.embedding_dim)

    def _few_tokens_to_many_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Per-query attention of a few tokens to many per-query keys, without projecting the keys.

        ``softmax(q_h (W_k,h x + b_k,h)) (W_v,h x + b_v,h)`` equals
        ``W_v,h (softmax((W_k,h^T q_h) x) x) + b_v,h``: the key bias adds a constant per row and
        attention rows sum to one. With ``heads * tokens`` smaller than the attention width this
        needs fewer operations than projecting every key and value (the image-sized tensors).
        """
        b, nq, t, _ = q.shape
        heads, head_dim = self.num_heads, self.internal_dim // self.num_heads
        q = self.q_proj(q).view(b, nq, t, heads, head_dim) * head_dim ** -0.5
        q_in_key_space = torch.einsum('bqthd,hdc->bqhtc', q, self.k_proj.weight.view(heads, head_dim, -1))
        attn = (q_in_key_space.flatten(2, 3) @ k.transpose(-1, -2)).softmax(dim=-1)
        context = (attn @ v).view(b, nq, heads, t, -1)
        out = torch.einsum('bqhtc,hdc->bqthd', context, self.v_proj.weight.view(heads, head_dim, -1))
        return self.out_proj(out.reshape(b, nq, t, self.internal_dim) + self.v_proj.bias)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image, MLP, image-to-token (each with a post-norm).

    Args:
        embedding_dim: channels of tokens and image features.
        num_heads: attention heads.
        mlp_dim: width of the MLP.
        activation: the MLP's activation.
        attention_downsample_rate: the cross-attentions' q/k/v width reduction.
        skip_first_layer_pe: do not add the positional code to the queries of the self-attention
            (the first block).
    """

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: Type[nn.Module] = nn.GELU, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = TwoWayAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = TwoWayAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, embedding_dim, 1, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = TwoWayAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: Optional[torch.Tensor], image_shared: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """One block.

        Args:
            queries: ``[B, Q, N, C]`` prompt tokens.
            keys: ``[B, Q, HW, C]`` image tokens (``[B, 1, HW, C]`` with ``image_shared``).
            query_pe: the tokens' positional code, shaped as ``queries``.
            key_pe: ``[B, 1, HW, C]`` positional code of the image tokens, or None.
            image_shared: ``keys`` are one set per image; the result is per query.

        Returns:
            ``(queries [B, Q, N, C], keys [B, Q, HW, C])``.
        """
        if not self.skip_first_layer_pe:
            queries = queries + query_pe
        queries = self.norm1(queries + self.self_attn(queries, queries, queries))
        keys_with_pe = keys if key_pe is None else keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(
            q, keys_with_pe, keys, 'keys' if image_shared else None))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(
            keys_with_pe, q, queries, 'queries' if image_shared else None))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Prompt tokens and image tokens attending to each other, then a final token-to-image step.

    Args:
        depth: two-way blocks.
        embedding_dim: channels of tokens and image features.
        num_heads: attention heads.
        mlp_dim: width of the blocks' MLPs.
        activation: the MLPs' activation.
        attention_downsample_rate: the cross-attentions' q/k/v width reduction.
    """

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: Type[nn.Module] = nn.GELU, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, activation,
                                 attention_downsample_rate, skip_first_layer_pe=(i == 0))
            for i in range(depth))
        self.final_attn_token_to_image = TwoWayAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: Optional[torch.Tensor],
                point_embedding: torch.Tensor,
                num_output_tokens: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Runs the transformer.

        Args:
            image_embedding: ``[B, C, h, w]``, one per image (never tiled per query).
            image_pe: ``[1, C, h, w]`` positional code, or None (SqueezeSAM).
            point_embedding: ``[B, Q, N, C]`` prompt tokens.
            num_output_tokens: keep only the first this many tokens through the final attention
                (the decoder reads nothing else); None: all N.

        Returns:
            ``(queries [B, Q, N', C], keys [B, Q, h*w, C])``, ``N' = num_output_tokens`` when given.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)[:, None]
        key_pe = None if image_pe is None else image_pe.flatten(2).transpose(1, 2)[:, None]
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, point_embedding, key_pe, image_shared=i == 0)
        if num_output_tokens is not None:
            queries = queries[:, :, :num_output_tokens]
            point_embedding = point_embedding[:, :, :num_output_tokens]
        q = queries + point_embedding
        keys_with_pe = keys if key_pe is None else keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, keys_with_pe, keys))
        return queries, keys
