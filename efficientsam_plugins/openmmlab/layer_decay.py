"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``."""
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from ..modeling.vit import layer_decay_scale, no_weight_decay


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SAMILayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """ViTDet/BEiT layer decay over ``model.backbone.get_layer_depth``; everything else lr x1.

    ``paramwise_cfg``: ``layer_decay_rate`` (e.g. 0.7), ``custom_keys`` as in mmengine (by substring,
    longest match wins); weight decay by :func:`~efficientsam_plugins.models.vit.no_weight_decay`.
    Without ``backbone.get_layer_depth`` (another backbone dropped into a config), plain
    per-parameter groups, so the constructor is safe to leave in a config.
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        decay_rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        backbone = getattr(module, 'backbone', None)
        get_layer_depth = getattr(backbone, 'get_layer_depth', None)
        if get_layer_depth is None:
            print_log(f'{type(self).__name__}: {type(backbone).__name__} has no get_layer_depth; '
                      'no layer-wise decay', logger='current')
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr = self.base_lr
            if get_layer_depth is not None and name.startswith('backbone.'):
                lr *= layer_decay_scale(*get_layer_depth(name, 'backbone.'), decay_rate)
            weight_decay = 0.0 if no_weight_decay(name, param) else self.base_wd or 0.0
            key = next((k for k in sorted_keys if k in name), None)
            if key is not None:
                lr *= custom_keys[key].get('lr_mult', 1.0)
                weight_decay *= custom_keys[key].get('decay_mult', 1.0)
            params.append({'params': [param], 'lr': lr, 'weight_decay': weight_decay})
