"""The core ViT as the one OpenMMLab backbone, and the core's channel LayerNorm for ViTDet's heads.

Both are registered once, in mmengine's root MODELS: mmdet, mmseg and mmpretrain find them there
(a toolbox's registry looks a name up in its parent when it does not hold it).
"""
import copy
from typing import Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.registry import MODELS

from ..convert import load_vit_checkpoint
from ..modeling.vit import VITDET_SETTINGS, LayerNorm2d, ViT

PRESETS = {'vitdet': VITDET_SETTINGS}
OUT_TYPES = ('featmap', 'avg_featmap')

# a core class (modeling/ imports only torch), so registered by a call: norm_cfg=dict(type='LayerNorm2d')
MODELS.register_module(module=LayerNorm2d)


@MODELS.register_module()
class SAMIViT(ViT):
    """:class:`~efficientsam_plugins.models.vit.ViT` with OpenMMLab's outputs and ``init_cfg``.

    Parameter names are the core's (``backbone.blocks.N...``), so SAMI pretraining checkpoints
    (``prefix='backbone.'``), official EfficientSAM checkpoints (``image_encoder.``), MAE/timm ViTs
    and model-zoo names (``zoo://efficientsam_ti``) load through
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)``, strictly, in every toolbox:
    what a finetune drops (a SAMI decoder and head, a teacher, ``norm.*`` without ``final_norm``) is
    skipped; a checkpoint of another width or depth is an error naming the keys.

    ``preset='vitdet'`` starts from ViTDet's settings (``VITDET_SETTINGS``), None from the plain
    ViT; ``**kwargs`` (the core ViT's arguments) override it. ``out_type='avg_featmap'`` returns the
    token mean after an ``fc_norm`` LayerNorm (MAE's classification input) instead of ``[B, C, h, w]``;
    either comes as a one-element tuple, as the toolboxes' necks and heads expect.
    """

    def __init__(self, arch: Union[str, dict] = 'ti', preset: Optional[str] = None, out_type: str = 'featmap',
                 init_cfg: Optional[dict] = None, **kwargs) -> None:
        if preset is not None and preset not in PRESETS:
            raise ValueError(f'unknown SAMIViT preset {preset!r}; expected one of {sorted(PRESETS)} or None')
        if out_type not in OUT_TYPES:
            raise ValueError(f'unknown out_type {out_type!r}; expected one of {OUT_TYPES}')
        super().__init__(arch=arch, **{**PRESETS.get(preset, {}), **kwargs})
        self.init_cfg = copy.deepcopy(init_cfg)
        self.is_init = False
        self.out_type = out_type
        self.fc_norm = nn.LayerNorm(self.out_channels, eps=1e-6) if out_type == 'avg_featmap' else None

    def init_weights(self) -> None:
        """Loads the ``init_cfg`` checkpoint when given (construction already initialised the rest)."""
        init_cfg = self.init_cfg
        if init_cfg:
            pretrained = isinstance(init_cfg, Mapping) and init_cfg.get('type') == 'Pretrained'
            if not pretrained or 'checkpoint' not in init_cfg:
                raise ValueError(f'{type(self).__name__} supports init_cfg=dict(type="Pretrained", '
                                 f'checkpoint=...), got {init_cfg}')
            left = load_vit_checkpoint(self, init_cfg['checkpoint'], init_cfg.get('prefix'), ('fc_norm.',))
            rel_pos = sum('.attn.rel_pos_' in key for key in left)
            initialised = ([f'{rel_pos} relative-position tables'] if rel_pos else []) + \
                [key for key in left if '.attn.rel_pos_' not in key]
            print_log(f'{type(self).__name__}: loaded {init_cfg["checkpoint"]}' +
                      (f'; initialised, not loaded: {", ".join(initialised)}' if initialised else ''),
                      logger='current')
        self.is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        feats = super().forward(x)
        if self.out_type == 'avg_featmap':
            return (self.fc_norm(feats.mean(dim=(2, 3))),)
        return (feats,)
