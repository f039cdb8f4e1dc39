"""The core ViT as an mmpretrain backbone: SAMI's student and the finetuned classifier."""
import copy
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..mmcommon.backbone import load_pretrained
from ..models.vit import ViT


@MODELS.register_module()
class SAMIViT(ViT, BaseModule):
    """:class:`~efficientsam_plugins.models.vit.ViT` with mmpretrain's outputs and ``init_cfg``.

    Parameter names are the core ViT's, so a SAMI checkpoint's ``backbone.*`` entries load into
    it with ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` (without a
    prefix: any checkpoint the converter recognises, e.g. an official EfficientSAM one). Loading is
    strict, as in the mmdet/mmseg backbone: what a finetune drops (the SAMI decoder and head, the
    teacher, ``norm.*`` without ``final_norm``) is skipped, a checkpoint of another width or depth
    is an error naming the keys; only ``fc_norm`` (and relative-position tables) may stay new.

    Args:
        out_type: ``'featmap'`` (``[B, C, h, w]``) or ``'avg_featmap'`` (mean over tokens, then
            the ``fc_norm`` LayerNorm; MAE's finetuning head input).
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=None)``; without one the core's
            MAE/timm initialisation is used.
        **kwargs: the core ViT's arguments (``arch``, ``img_size``, ``drop_path_rate``, ...).
    """

    OUT_TYPES = ('featmap', 'avg_featmap')

    def __init__(self, arch: Union[str, dict] = 'ti', out_type: str = 'featmap',
                 final_norm: bool = True, init_cfg: Optional[dict] = None, **kwargs) -> None:
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'unknown out_type {out_type!r}; expected one of {self.OUT_TYPES}')
        ViT.__init__(self, arch=arch, final_norm=final_norm, **kwargs)
        self.init_cfg = copy.deepcopy(init_cfg)
        self.out_type = out_type
        self.fc_norm = nn.LayerNorm(self.out_channels, eps=1e-6) if out_type == 'avg_featmap' else None

    def init_weights(self) -> None:
        """The ``init_cfg`` checkpoint if given, else the core's initialisation."""
        if self.init_cfg:
            load_pretrained(self, self.init_cfg, new_layers=('fc_norm.',))
            self.is_init = True
        else:
            self.reset_parameters()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        feats = ViT.forward(self, x)
        if self.out_type == 'avg_featmap':
            return (self.fc_norm(feats.mean(dim=(2, 3))),)
        return (feats,)
