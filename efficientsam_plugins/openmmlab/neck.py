"""The core simple feature pyramid as an OpenMMLab neck (in mmengine's root MODELS, which mmdet and mmseg search)."""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.registry import MODELS

from ..modeling.simple_pyramid import SimpleFeaturePyramid


@MODELS.register_module()
class SAMISimpleFPN(nn.Module):
    """ViTDet's simple pyramid from the backbone's last map (strides 4/8/16/32); ``num_outs`` 5
    (detection) adds a max-pooled P6, 4 (segmentation) does not. ``backbone_channel``: the ViT width."""

    def __init__(self, backbone_channel: int, out_channels: int = 256, num_outs: int = 5,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), init_cfg=None) -> None:
        super().__init__()
        if num_outs not in (len(scale_factors), len(scale_factors) + 1):
            raise ValueError(f'num_outs must be {len(scale_factors)} or {len(scale_factors) + 1} '
                             f'for {len(scale_factors)} scale factors, got {num_outs}')
        self.pyramid = SimpleFeaturePyramid(backbone_channel, out_channels, scale_factors,
                                            top_block=num_outs > len(scale_factors))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        return tuple(self.pyramid(inputs[-1]))
