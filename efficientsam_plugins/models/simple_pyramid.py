"""ViTDet's simple feature pyramid: strides 4/8/16/32 (and a max-pooled 64) from one stride-16 map.

Shared by the mmdet and mmseg necks and the detectron2 backbone; only the wrappers differ.
"""
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vit import LayerNorm2d


def pyramid_channels(embed_dim: int, scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5)) -> List[int]:
    """Channels of each level before its output convs (dim/4, dim/2, dim, dim for Ti/S/B alike)."""
    return [embed_dim // 4 if s == 4.0 else embed_dim // 2 if s == 2.0 else embed_dim for s in scale_factors]


class SimpleFeaturePyramid(nn.Module):
    """Builds the pyramid levels from the last ViT feature map.

    Args:
        in_channels: channels of the ViT map (its embed dim).
        out_channels: channels of every output level.
        scale_factors: resize of each level relative to the input (4, 2, 1, 0.5 -> strides 4..32
            for a stride-16 ViT).
        top_block: append a level of half the last one's size by max-pooling (P6 for Mask R-CNN).
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), top_block: bool = True) -> None:
        super().__init__()
        self.scale_factors = tuple(scale_factors)
        self.top_block = top_block
        self.stages = nn.ModuleList()
        for scale, channels in zip(self.scale_factors, pyramid_channels(in_channels, self.scale_factors)):
            if scale == 4.0:
                resize = [nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2),
                          LayerNorm2d(in_channels // 2), nn.GELU(),
                          nn.ConvTranspose2d(in_channels // 2, in_channels // 4, 2, stride=2)]
            elif scale == 2.0:
                resize = [nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)]
            elif scale == 1.0:
                resize = []
            elif scale == 0.5:
                resize = [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                raise ValueError(f'scale factor {scale} is not supported; use 4, 2, 1 or 0.5')
            self.stages.append(nn.Sequential(
                *resize,
                nn.Conv2d(channels, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels)))
        self.num_levels = len(self.stages) + int(top_block)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``[B, C, H, W]`` to the levels, finest first."""
        levels = [stage(x) for stage in self.stages]
        if self.top_block:
            levels.append(F.max_pool2d(levels[-1], kernel_size=1, stride=2))
        return levels
