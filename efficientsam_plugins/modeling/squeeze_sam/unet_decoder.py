"""The UNet decoder: from the coarsest level back to level 0, each step a 2x upsampling joined
with the encoder's skip features."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet_encoder import DoubleConv


class LinearUpsample2x(nn.Module):
    """A 2x2 stride-2 transposed conv written as a per-pixel Linear to ``4 * out`` channels, ReLU,
    BatchNorm over those, then pixel shuffle (the official ``ConvTranspose2dUsingLinear``, kept
    as a Linear so its weights load unchanged).

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upsampler_linear = nn.Sequential(nn.Linear(in_channels, 4 * out_channels), nn.ReLU())
        self.norm = nn.BatchNorm2d(4 * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[n, in_channels, h, w]`` to ``[n, out_channels, 2h, 2w]``."""
        linear = self.upsampler_linear[0]
        x = self.upsampler_linear[1](F.conv2d(x, linear.weight[:, :, None, None], linear.bias))
        return F.pixel_shuffle(self.norm(x), 2)


class Up(nn.Module):
    """Upsamples ``x1`` to half its channels, pads it to the skip ``x2``'s size, concatenates
    ``[x2, x1]`` and applies a :class:`DoubleConv`.

    Args:
        in_channels: channels of the coarser input ``x1``.
        skip_channels: channels of the skip features ``x2``.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = LinearUpsample2x(in_channels, in_channels // 2)
        self.conv = DoubleConv(in_channels // 2 + skip_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """``x1`` ``[n, in_channels, h, w]`` joined with the skip ``x2`` ``[n, skip_channels, ~2h, ~2w]``
        to ``[n, out_channels]`` at ``x2``'s size."""
        x1 = self.up(x1)
        dy, dx = x2.shape[2] - x1.shape[2], x2.shape[3] - x1.shape[3]
        if dy or dx:  # odd sizes on the way down
            x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class UnetDecoder(nn.Module):
    """The UNet's expanding path: the encoder's ``conv_dims`` in reverse.

    Args:
        conv_dims: the encoder's channels per level, finest first; level ``i`` ends with
            ``conv_dims[i]`` channels.
    """

    def __init__(self, conv_dims: Sequence[int]) -> None:
        super().__init__()
        dims = list(conv_dims)
        self.unet_upscaling_layers = nn.ModuleList(
            Up(dims[i + 1], dims[i], dims[i])
            for i in reversed(range(len(dims) - 1)))

    def forward(self, features: Sequence[torch.Tensor], bottom: torch.Tensor) -> torch.Tensor:
        """Level 0's features.

        Args:
            features: the encoder's skip features, finest first, the bottom level excluded.
            bottom: the bottom level's (transformer-updated) map.

        Returns:
            ``[n, conv_dims[0], h, w]`` at level 0's resolution.
        """
        x = bottom
        for layer, skip in zip(self.unet_upscaling_layers, reversed(features)):
            x = layer(x, skip)
        return x
