"""ViTDet's simple feature pyramid, shared by the mmdet and mmseg necks and the detectron2 backbone."""
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vit import LayerNorm2d


class SimpleFeaturePyramid(nn.Module):
    """The pyramid levels from the last ViT feature map.

    Args:
        in_channels: channels of the ViT feature map.
        out_channels: channels of every level.
        scale_factors: one level per factor, resizing the map (4, 2, 1, 0.5: strides 4..32 for a
            stride-16 ViT).
        top_block: add a max-pooled half-size level (P6).

    Raises:
        ValueError: for a scale factor other than 4, 2, 1 or 0.5.
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), top_block: bool = True) -> None:
        super().__init__()
        self.scale_factors = tuple(scale_factors)
        self.top_block = top_block
        self.stages = nn.ModuleList()
        for scale in self.scale_factors:
            if scale not in (4.0, 2.0, 1.0, 0.5):
                raise ValueError(f'scale factor {scale} is not supported; use 4, 2, 1 or 0.5')
            half = in_channels // 2
            resize = [nn.ConvTranspose2d(in_channels, half, 2, stride=2)] if scale > 1 else []
            if scale == 4.0:
                resize += [LayerNorm2d(half), nn.GELU(), nn.ConvTranspose2d(half, in_channels // 4, 2, stride=2)]
            elif scale == 0.5:
                resize = [nn.MaxPool2d(kernel_size=2, stride=2)]
            channels = in_channels // int(max(scale, 1))  # dim/4, dim/2, dim, dim
            self.stages.append(nn.Sequential(
                *resize,
                nn.Conv2d(channels, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels)))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The pyramid of a feature map.

        Args:
            x: ``[B, C, H, W]`` ViT features.

        Returns:
            The levels ``[B, out_channels, H * s, W * s]``, finest first (P6 last with ``top_block``).
        """
        levels = [stage(x) for stage in self.stages]
        if self.top_block:
            levels.append(F.max_pool2d(levels[-1], kernel_size=1, stride=2))
        return levels
