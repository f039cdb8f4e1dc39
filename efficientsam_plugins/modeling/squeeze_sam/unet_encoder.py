"""The UNet encoder: a patch-embedding stem, then conv blocks, each level halving the resolution.

Every conv is followed by ReLU and then BatchNorm (SqueezeSAM's order; BatchNorm instead of
LayerNorm folds into the conv for mobile inference). Module names follow the official code.
"""
from typing import List, Sequence

import torch
import torch.nn as nn


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv of the fused input, then a one-group GroupNorm.

    Args:
        patch_size: the patch side.
        in_chans: input channels (image plus prompt channels).
        patch_embed_dim: output channels.
    """

    def __init__(self, patch_size: int, in_chans: int, patch_embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_chans, patch_embed_dim, patch_size, stride=patch_size),
                                  nn.GroupNorm(1, patch_embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[n, in_chans, S, S]`` to ``[n, patch_embed_dim, S/p, S/p]``."""
        return self.proj(x)


class ConvReluNorm(nn.Module):
    """``conv`` (a same-size conv and ReLU) then ``norm`` (BatchNorm).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: the conv's (odd) kernel size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size,
                                            padding=(kernel_size - 1) // 2), nn.ReLU())
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[n, in_channels, h, w]`` to ``[n, out_channels, h, w]``."""
        return self.norm(self.conv(x))


class DoubleConv(nn.Module):
    """Two :class:`ConvReluNorm` (3x3).

    Args:
        in_channels: input channels.
        out_channels: output channels (of both).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(ConvReluNorm(in_channels, out_channels),
                                         ConvReluNorm(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[n, in_channels, h, w]`` to ``[n, out_channels, h, w]``."""
        return self.double_conv(x)


class Down(nn.Module):
    """2x2 max-pooling then a :class:`DoubleConv`.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[n, in_channels, h, w]`` to ``[n, out_channels, h/2, w/2]``."""
        return self.maxpool_conv(x)


class UnetEncoder(nn.Module):
    """The UNet's contracting path; level 0 keeps the stem's resolution.

    Args:
        patch_embed_dim: channels of the stem's output.
        conv_dims: channels of each level, finest first.
    """

    def __init__(self, patch_embed_dim: int, conv_dims: Sequence[int]) -> None:
        super().__init__()
        self.down_layers = nn.ModuleList(
            [DoubleConv(patch_embed_dim, conv_dims[0])]
            + [Down(conv_dims[i], conv_dims[i + 1]) for i in range(len(conv_dims) - 1)])

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The features of every level.

        Args:
            x: ``[n, patch_embed_dim, h, w]`` the stem's output.

        Returns:
            ``[n, conv_dims[i], h / 2**i, w / 2**i]`` per level ``i``, finest first.
        """
        features = []
        for layer in self.down_layers:
            x = layer(x)
            features.append(x)
        return features
