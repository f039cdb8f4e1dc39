"""The core ViT as an OpenMMLab backbone, with pretrained loading through the one converter."""
import copy
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log

from ..models.convert import load_vit_checkpoint
from ..models.vit import ViT


def load_pretrained(model: ViT, init_cfg: Mapping[str, Any], new_layers: Sequence[str] = ()) -> None:
    """Loads ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` through the one converter.

    Every OpenMMLab backbone loads this way, so a checkpoint that does not fit (another width or
    depth, another model, a corrupt file) raises an error naming the keys in every toolbox.
    ``new_layers``: prefixes of layers the backbone adds on top of the ViT, see
    :func:`~efficientsam_plugins.models.convert.vit_state_dict`.
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
    """ViTDet-style SAMI ViT (defaults: 1024 input, window 14, global blocks 2/5/8/11, rel. pos.).

    Parameter names are the core's (``backbone.blocks.N...``), so SAMI pretraining checkpoints,
    official EfficientSAM checkpoints (``image_encoder.``), MAE/timm ViTs and model-zoo names
    (``zoo://efficientsam_ti``) load through ``init_cfg=dict(type='Pretrained', checkpoint=...)``.

    Returns a one-element tuple with the last feature map ``[B, C, H/16, W/16]``.
    """

    def __init__(self, arch: Union[str, dict] = 'ti', img_size: int = 1024, patch_size: int = 16,
                 drop_path_rate: float = 0.1, window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11), use_rel_pos: bool = True,
                 pretrain_img_size: int = 224, with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size,
                         drop_path_rate=drop_path_rate, pretrain_img_size=pretrain_img_size,
                         window_size=window_size, global_attn_indexes=global_attn_indexes,
                         use_rel_pos=use_rel_pos, with_cp=with_cp)
        self.init_cfg = copy.deepcopy(init_cfg)
        self.is_init = False

    def init_weights(self) -> None:
        """Loads ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` when given."""
        if self.init_cfg is not None:
            load_pretrained(self, self.init_cfg)
        self.is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.forward_features(x),)

