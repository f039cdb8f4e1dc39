"""The core ViT as the one OpenMMLab backbone: mmdet, mmseg and mmpretrain all register this class."""
import copy
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..models.convert import load_vit_checkpoint
from ..models.vit import VITDET_SETTINGS, ViT

PRESETS = {'vitdet': VITDET_SETTINGS}
OUT_TYPES = ('featmap', 'avg_featmap')


def load_pretrained(model: ViT, init_cfg: Mapping[str, Any], new_layers: Sequence[str] = ()) -> None:
    """Loads ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` through the one converter.

    So a checkpoint that does not fit (another width or depth, another model, a corrupt file)
    raises an error naming the keys in every toolbox. ``new_layers``: prefixes of layers the
    backbone adds on top of the ViT (see :func:`~efficientsam_plugins.models.convert.vit_state_dict`).
    """
    name = type(model).__name__
    if not isinstance(init_cfg, Mapping) or init_cfg.get('type') != 'Pretrained' or 'checkpoint' not in init_cfg:
        raise ValueError(f'{name} supports init_cfg=dict(type="Pretrained", checkpoint=...), got {init_cfg}')
    checkpoint = init_cfg['checkpoint']
    left = load_vit_checkpoint(model, checkpoint, init_cfg.get('prefix'), new_layers)
    rel_pos = sum('.attn.rel_pos_' in key for key in left)
    initialised = ([f'{rel_pos} relative-position tables'] if rel_pos else []) + \
        [key for key in left if '.attn.rel_pos_' not in key]
    print_log(f'{name}: loaded {checkpoint}' +
              (f'; initialised, not loaded: {", ".join(initialised)}' if initialised else ''), logger='current')


class SAMIViT(ViT):
    """:class:`~efficientsam_plugins.models.vit.ViT` with OpenMMLab's outputs and ``init_cfg``.

    Parameter names are the core's (``backbone.blocks.N...``), so SAMI pretraining checkpoints
    (``prefix='backbone.'``), official EfficientSAM checkpoints (``image_encoder.``), MAE/timm ViTs
    and model-zoo names (``zoo://efficientsam_ti``) load through
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)``, strictly: what a finetune
    drops (a SAMI decoder and head, a teacher, ``norm.*`` without ``final_norm``) is skipped; a
    checkpoint of another width or depth is an error naming the keys.

    Args:
        arch: ``'ti'``, ``'s'``, ``'b'`` (or ``tiny``/``small``/``base``, or a dict).
        preset: ``'vitdet'`` starts from :data:`~efficientsam_plugins.models.vit.VITDET_SETTINGS`
            (1024 input, window 14, global blocks 2/5/8/11, relative positions, drop path 0.1);
            None from the core's plain ViT. Explicit arguments override the preset.
        out_type: ``'featmap'`` (``[B, C, h, w]``) or ``'avg_featmap'`` (mean over tokens, then
            the ``fc_norm`` LayerNorm: MAE's classification head input).
        **kwargs: the core ViT's arguments (``img_size``, ``window_size``, ``final_norm``, ...).

    Returns a one-element tuple, as the toolboxes' necks and heads expect.
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
        if self.init_cfg:
            load_pretrained(self, self.init_cfg, new_layers=('fc_norm.',))
        self.is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        feats = super().forward(x)
        if self.out_type == 'avg_featmap':
            return (self.fc_norm(feats.mean(dim=(2, 3))),)
        return (feats,)
