"""The core ViT as an OpenMMLab backbone, with pretrained loading through the one converter."""
import copy
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log

from ..models.convert import load_vit_checkpoint
from ..models.vit import ViT


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
            if self.init_cfg.get('type') != 'Pretrained' or 'checkpoint' not in self.init_cfg:
                raise ValueError(f'SAMIViT supports init_cfg=dict(type="Pretrained", checkpoint=...), '
                                 f'got {self.init_cfg}')
            checkpoint = self.init_cfg['checkpoint']
            left = load_vit_checkpoint(self, checkpoint, self.init_cfg.get('prefix'))
            print_log(f'SAMIViT: loaded {checkpoint}; initialised, not loaded: '
                      f'{len(left)} relative-position tables' if left else f'SAMIViT: loaded {checkpoint}',
                      logger='current')
        self.is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.forward_features(x),)
