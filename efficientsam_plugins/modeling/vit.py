"""The one plain ViT of the project: EfficientSAM encoder, SAMI student and ViTDet backbone.

Parameter names are those of the official EfficientSAM encoder, MAE and timm (``neck.0..3`` from
SAM), so their checkpoints load without a renaming table; the ViTDet additions (window attention,
``blocks.N.attn.rel_pos_{h,w}``) use the names of detectron2 and segment-anything.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from .attention import dot_product_attention

VIT_ARCHS: Dict[str, Dict[str, int]] = {
    'ti': dict(embed_dim=192, depth=12, num_heads=3),
    's': dict(embed_dim=384, depth=12, num_heads=6),
    'b': dict(embed_dim=768, depth=12, num_heads=12),
}
# ViTDet's backbone (Li et al., 2022), the paper's COCO detection recipe, for every toolbox
# (``SAMIViT(preset='vitdet')`` in mmdet, ``SAMIViTNet`` in detectron2): 14x14 windows, global at 2/5/8/11.
VITDET_SETTINGS = dict(img_size=1024, drop_path_rate=0.1, window_size=14, global_attn_indexes=(2, 5, 8, 11),
                       use_rel_pos=True)
def vit_arch(name: str) -> Dict[str, int]:
    """Width/depth/heads of a named variant.

    Args:
        name: ``'ti'``, ``'s'`` or ``'b'`` (a key of :data:`VIT_ARCHS`).

    Returns:
        A new dict of ``embed_dim``, ``depth`` and ``num_heads``.
    """
    if name not in VIT_ARCHS:
        raise ValueError(f'unknown ViT variant {name!r}; expected one of {sorted(VIT_ARCHS)}')
    return dict(VIT_ARCHS[name])


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (SAM's neck).

    Args:
        num_channels: C.
        eps: added to the variance.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, H, W]`` normalised over C."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training.

    Args:
        drop_prob: the probability of dropping a sample's branch.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, ...]`` with whole samples zeroed (the rest rescaled) while training."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        """The drop probability, for ``repr``."""
        return f'drop_prob={self.drop_prob}'


class PatchEmbed(nn.Module):
    """Non-overlapping patches to a ``[B, C, H/p, W/p]`` map.

    Args:
        patch_size: p.
        in_chans: input channels.
        embed_dim: C.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, in_chans, H, W]`` to ``[B, C, H/p, W/p]``."""
        return self.proj(x)


class Mlp(nn.Module):
    """The transformer block's MLP: Linear, GELU, Linear.

    Args:
        dim: input and output features.
        hidden_dim: hidden features.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., dim]`` to ``[..., dim]``."""
        return self.fc2(self.act(self.fc1(x)))


def resize_abs_pos(pos_embed: torch.Tensor, has_cls_token: bool, hw: Tuple[int, int]) -> torch.Tensor:
    """An absolute position embedding resized (bicubic) to a token grid.

    Args:
        pos_embed: ``[1, (1+)S*S, C]``, a square grid (after a cls slot with ``has_cls_token``).
        has_cls_token: the first position is a cls token's (dropped).
        hw: the ``(H, W)`` token grid.

    Returns:
        ``[1, H, W, C]``.

    Raises:
        ValueError: for positions that are not a square grid.
    """
    if has_cls_token:
        pos_embed = pos_embed[:, 1:]
    size = math.isqrt(pos_embed.shape[1])
    if size * size != pos_embed.shape[1]:
        raise ValueError(f'pos_embed holds {pos_embed.shape[1]} positions, not a square grid')
    grid = pos_embed.reshape(1, size, size, -1)
    if (size, size) == tuple(hw):
        return grid
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=hw, mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1)


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """A relative-position table linearly resized.

    Args:
        rel_pos: ``[L, C]`` table.
        length: the rows wanted.

    Returns:
        ``[length, C]``.
    """
    if rel_pos.shape[0] == length:
        return rel_pos
    return F.interpolate(rel_pos.t()[None], size=length, mode='linear')[0].t()


def rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                 hw: Tuple[int, int]) -> torch.Tensor:
    """Decomposed relative-position bias (MViTv2/ViTDet) of self-attention over a token grid.

    Args:
        q: ``[B, heads, h*w, C]`` queries.
        rel_pos_h: ``[Lh, C]`` table of vertical offsets (resized to ``2h - 1`` rows).
        rel_pos_w: ``[Lw, C]`` table of horizontal offsets.
        hw: the ``(h, w)`` grid.

    Returns:
        ``[B, heads, h*w, h*w]`` additive attention bias.
    """
    h, w = hw

    def table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:  # [size (query), size (key), C]
        coords = torch.arange(size, device=q.device)
        return resize_rel_pos(rel_pos, 2 * size - 1)[coords[:, None] - coords[None, :] + size - 1]

    b, heads, _, dim = q.shape
    r_q = q.reshape(b, heads, h, w, dim)
    bias_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, table(h, rel_pos_h))
    bias_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, table(w, rel_pos_w))
    return (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, heads, h * w, h * w)


class Attention(nn.Module):
    """Multi-head self-attention with an optional decomposed relative-position bias.

    Args:
        dim: channels.
        num_heads: attention heads (must divide ``dim``).
        qkv_bias: biases in the q/k/v projection.
        use_rel_pos: add the decomposed relative-position bias.
        rel_pos_size: the ``(h, w)`` grid the relative-position tables are sized for.

    Raises:
        ValueError: when ``num_heads`` does not divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, use_rel_pos: bool = False,
                 rel_pos_size: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dim {dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, dim // num_heads))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, dim // num_heads))

    def forward(self, x: torch.Tensor, hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Self-attention over a token sequence.

        Args:
            x: ``[B, N, C]`` tokens.
            hw: the ``(h, w)`` grid of the N tokens, needed for relative positions.

        Returns:
            ``[B, N, C]``.
        """
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, hw).to(q.dtype) if self.use_rel_pos else None
        x = dot_product_attention(q, k, v, bias)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Non-overlapping windows of a token grid, zero-padding H and W to multiples of the window.

    Args:
        x: ``[B, H, W, C]`` tokens.
        window: the window side.

    Returns:
        ``(windows [B*nW, window*window, C], padded (Hp, Wp))``.
    """
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`window_partition`, dropping the padding.

    Args:
        windows: ``[B*nW, window*window, C]``.
        window: the window side.
        padded_hw: the padded ``(Hp, Wp)`` :func:`window_partition` returned.
        hw: the original ``(H, W)``.

    Returns:
        ``[B, H, W, C]`` tokens.
    """
    (hp, wp), (h, w) = padded_hw, hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w].contiguous()


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size > 0`` gives ViTDet window attention.

    Args:
        dim: channels.
        num_heads: attention heads.
        mlp_ratio: the MLP's hidden width over ``dim``.
        qkv_bias: biases in the q/k/v projection.
        drop_path: stochastic-depth probability.
        window_size: window side of window attention; 0: global attention.
        use_rel_pos: add the decomposed relative-position bias.
        grid_size: the token grid of global attention (sizes its relative-position tables).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, window_size: int = 0, use_rel_pos: bool = False,
                 grid_size: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        rel_pos_size = (window_size, window_size) if window_size else grid_size
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, rel_pos_size)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One block.

        Args:
            x: a ``[B, H, W, C]`` token grid, or a ``[B, N, C]`` sequence (plain global attention).

        Returns:
            ``x``'s shape.

        Raises:
            ValueError: for a sequence given to a window or relative-position block.
        """
        y = self.norm1(x)
        if x.ndim == 3:
            if self.window_size or self.attn.use_rel_pos:
                raise ValueError('window attention needs the token grid, and so do relative positions; a '
                                 'token sequence (masked forward) works only with plain global blocks')
            y = self.attn(y)
        elif self.window_size:
            y, padded_hw = window_partition(y, self.window_size)
            y = self.attn(y, (self.window_size, self.window_size))
            y = window_unpartition(y, self.window_size, padded_hw, x.shape[1:3])
        else:
            b, h, w, c = x.shape
            y = self.attn(y.reshape(b, h * w, c), (h, w)).view(b, h, w, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """Plain ViT with optional window attention, relative positions, SAM neck and final norm.

    Any input divisible by the patch size runs. The absolute position embedding is stored at
    ``pretrain_img_size`` (224: 14x14 plus a cls slot, as EfficientSAM/MAE store it) and
    interpolated to the input grid.

    Args:
        arch: a name of :func:`vit_arch` or a dict of ``embed_dim``, ``depth``, ``num_heads``.
        img_size: the input size the relative-position tables are sized for.
        patch_size: the patch side.
        in_chans: input channels.
        mlp_ratio: the MLPs' hidden width over the embedding width.
        qkv_bias: biases in the q/k/v projections.
        drop_path_rate: stochastic depth, rising linearly to this over the blocks.
        pretrain_img_size: the input size the absolute position embedding is stored at.
        pretrain_use_cls_token: the stored position embedding has a cls slot.
        window_size: window side of window attention; 0: global attention in every block.
        global_attn_indexes: blocks with global attention when ``window_size`` is set.
        use_rel_pos: decomposed relative-position bias in every block.
        neck_dims: SAM's neck (as in the official encoder, both its convs output ``neck_dims[0]``
            channels); None: no neck.
        final_norm: a LayerNorm after the last block.
        with_cp: activation checkpointing of every block while training.

    Raises:
        ValueError: for an unknown arch name, an image size the patch size does not divide, or
            global attention indexes outside the blocks.
    """

    def __init__(self, arch: Union[str, Dict[str, int]] = 'ti', img_size: int = 224,
                 patch_size: int = 16, in_chans: int = 3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path_rate: float = 0.0, pretrain_img_size: int = 224,
                 pretrain_use_cls_token: bool = True, window_size: int = 0,
                 global_attn_indexes: Sequence[int] = (), use_rel_pos: bool = False,
                 neck_dims: Optional[Sequence[int]] = None, final_norm: bool = False,
                 with_cp: bool = False) -> None:
        super().__init__()
        arch = vit_arch(arch) if isinstance(arch, str) else dict(arch)
        self.embed_dim, self.depth, self.num_heads = arch['embed_dim'], arch['depth'], arch['num_heads']
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not divisible by patch_size {patch_size}')
        self.img_size, self.patch_size = img_size, patch_size
        self.pretrain_use_cls_token = pretrain_use_cls_token
        self.with_cp = with_cp
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, self.embed_dim)
        num_positions = (pretrain_img_size // patch_size) ** 2 + int(pretrain_use_cls_token)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, self.embed_dim))
        bad = [i for i in global_attn_indexes if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f'global_attn_indexes {bad} are outside the {self.depth} blocks')
        dpr = torch.linspace(0, drop_path_rate, self.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(self.embed_dim, self.num_heads, mlp_ratio, qkv_bias, dpr[i],
                  0 if i in global_attn_indexes else window_size, use_rel_pos, (grid, grid))
            for i in range(self.depth))
        self.norm = nn.LayerNorm(self.embed_dim, eps=1e-6) if final_norm else None
        self.out_channels = neck_dims[0] if neck_dims else self.embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(self.embed_dim, self.out_channels, kernel_size=1, bias=False), LayerNorm2d(self.out_channels),
            nn.Conv2d(self.out_channels, self.out_channels, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(self.out_channels)) if neck_dims else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAE/timm initialisation: truncated-normal position embedding and linear weights."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks (checkpointed with ``with_cp`` while training), then the final norm if any."""
        for block in self.blocks:
            if self.with_cp and self.training and x.requires_grad:
                x = activation_checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x if self.norm is None else self.norm(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus position embedding.

        Args:
            x: images ``[B, in_chans, H, W]``.

        Returns:
            The token grid ``[B, H/p, W/p, C]``.

        Raises:
            ValueError: for input that is not ``[B, in_chans, H, W]``.
        """
        if x.ndim != 4 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f'expected images [B, {self.patch_embed.proj.in_channels}, H, W], '
                             f'got {tuple(x.shape)}')
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f'image size {tuple(x.shape[2:])} is not divisible by the patch size '
                             f'{self.patch_size}')
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        return x + resize_abs_pos(self.pos_embed, self.pretrain_use_cls_token, x.shape[1:3])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's features (after the final norm, before the neck).

        Args:
            x: images ``[B, in_chans, H, W]``.

        Returns:
            ``[B, C, H/p, W/p]``.
        """
        return self._run_blocks(self.embed(x)).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output.

        Args:
            x: images ``[B, in_chans, H, W]``.

        Returns:
            ``[B, C, H/p, W/p]``: the neck's output when there is a neck.
        """
        x = self.forward_features(x)
        return self.neck(x) if self.neck is not None else x

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Runs only the visible tokens (MAE/SAMI encoder).

        Args:
            x: images ``[B, in_chans, H, W]``.
            mask: bool ``[B, L]`` over the ``H/p * W/p`` tokens in raster order, True where masked,
                with the same number of visible tokens per sample.

        Returns:
            ``(features [B, N_visible, C], ids_visible [B, N_visible])``, visible tokens in raster order.

        Raises:
            ValueError: for a mask of the wrong shape or dtype, or unequal visible counts.
        """
        tokens = self.embed(x).flatten(1, 2)
        if mask.shape != tokens.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f'mask must be bool {tuple(tokens.shape[:2])} (batch, tokens), '
                             f'got {mask.dtype} {tuple(mask.shape)}')
        num_visible = (~mask).sum(1)
        if (num_visible != num_visible[0]).any() or num_visible[0] == 0:
            raise ValueError(f'every sample needs the same, non-zero number of visible tokens; '
                             f'got {num_visible.tolist()}')
        ids_visible = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :int(num_visible[0])]
        x = torch.gather(tokens, 1, ids_visible[..., None].expand(-1, -1, tokens.shape[-1]))
        return self._run_blocks(x), ids_visible

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """``(layer_id, num_layers)`` for layer-wise lr decay, as :func:`vit_layer_depth`.

        Args:
            param_name: the parameter's full name.
            prefix: the prefix of this ViT's parameters in that name.
        """
        return vit_layer_depth(param_name, self.depth, prefix)


def vit_layer_depth(param_name: str, depth: int, prefix: str = '') -> Tuple[int, int]:
    """``(layer_id, num_layers)`` of a ViT parameter for layer-wise lr decay (mmpretrain's convention):
    embeddings 0, block ``i`` ``i + 1``, everything else the last. Needs only the name and the depth,
    so optimizers that see names alone (detectron2's lr-factor functions) share it.

    Args:
        param_name: the parameter's full name.
        depth: the ViT's blocks.
        prefix: the prefix of the ViT's parameters (a name without it is not the ViT's: the last layer).
    """
    num_layers = depth + 2
    name = param_name[len(prefix):] if param_name.startswith(prefix) else ''
    if name.startswith(('pos_embed', 'patch_embed', 'cls_token')):
        return 0, num_layers
    if name.startswith('blocks.'):
        return int(name.split('.')[1]) + 1, num_layers
    return num_layers - 1, num_layers


NO_WEIGHT_DECAY_NAMES = ('pos_embed', 'cls_token', 'mask_token')


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """The weight-decay rule of every framework's optimizer: 1-D parameters (every norm's weight and
    bias, every bias) and position embeddings / tokens take none; relative-position tables do, as
    in detectron2's and mmdet's ViTDet.

    Args:
        name: the parameter's name.
        param: the parameter.

    Returns:
        True when the parameter takes no weight decay.
    """
    return param.ndim == 1 or name.rsplit('.', 1)[-1] in NO_WEIGHT_DECAY_NAMES


def layer_decay_scale(layer_id: int, num_layers: int, decay_rate: float) -> float:
    """The lr factor of a layer: the last layer (heads, neck) keeps 1, each earlier one x decay_rate.

    Args:
        layer_id: the layer, from :func:`vit_layer_depth`.
        num_layers: the layers, from :func:`vit_layer_depth`.
        decay_rate: the factor per layer.
    """
    return decay_rate ** (num_layers - 1 - layer_id)
