"""Layer-wise lr decay and weight-decay groups for detectron2's optimizers.

detectron2 calls the factor function with a parameter's full name only; the layer of a name comes
from :func:`vit_layer_depth`, the same definition the core ViT gives mmengine's optimizers.
Needs only torch (no detectron2), so configs and tests can use it anywhere.
"""
from typing import Callable, Dict, List, Optional

import torch.nn as nn

from ..modeling.vit import layer_decay_scale, no_weight_decay, vit_layer_depth


def vit_lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12,
                      prefix: str = 'backbone.net.') -> float:
    """lr factor of parameter ``name``: ``lr_decay_rate ** (depth + 1 - layer)``.

    Layers are the ViT's (``pos_embed``/``patch_embed`` 0, ``blocks.i`` i+1, ``num_layers`` blocks);
    parameters outside the ViT (pyramid, RPN, heads) keep 1, as in detectron2's ``get_vit_lr_decay_rate``.
    """
    return layer_decay_scale(*vit_layer_depth(name, num_layers, prefix), lr_decay_rate)


def sami_optimizer_params(model: nn.Module, base_lr: float, weight_decay: float,
                          lr_factor_func: Optional[Callable[[str], float]] = None) -> List[Dict]:
    """Parameter groups for ``L(torch.optim.AdamW)(params=L(sami_optimizer_params)(...))``.

    lr ``base_lr * lr_factor_func(name)``; weight decay by :func:`no_weight_decay`, the rule of the
    mmdet configs, so both frameworks train the same recipe; detectron2's
    ``get_default_optimizer_params`` would exempt only ``torch.nn.LayerNorm`` modules (not the
    LayerNorms of ViTDet's pyramid and heads) and decay biases. Equal settings share a group.
    """
    groups: Dict[tuple, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = base_lr * (lr_factor_func(name) if lr_factor_func is not None else 1.0)
        groups.setdefault((lr, 0.0 if no_weight_decay(name, param) else weight_decay), []).append(param)
    return [{'params': params, 'lr': lr, 'weight_decay': decay} for (lr, decay), params in groups.items()]
