"""Layer-wise lr decay for detectron2's ``get_default_optimizer_params(lr_factor_func=...)``.

detectron2 calls the factor function with a parameter's full name only; the layer of a name comes
from :func:`vit_layer_depth`, the same definition the core ViT gives mmengine's optimizers.
Needs only torch (no detectron2), so configs and tests can use it anywhere.
"""
from ..models.vit import layer_decay_scale, vit_layer_depth


def vit_lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12,
                      prefix: str = 'backbone.net.') -> float:
    """lr factor of parameter ``name``: ``lr_decay_rate ** (depth + 1 - layer)``.

    Layers are the ViT's (``pos_embed``/``patch_embed`` 0, ``blocks.i`` i+1, ``num_layers`` blocks);
    parameters outside the ViT (pyramid, RPN, heads) keep 1, as in detectron2's ``get_vit_lr_decay_rate``.
    """
    return layer_decay_scale(*vit_layer_depth(name, num_layers, prefix), lr_decay_rate)
