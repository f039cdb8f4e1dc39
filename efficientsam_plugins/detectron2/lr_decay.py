"""Layer-wise lr decay for detectron2's ``get_default_optimizer_params(lr_factor_func=...)``.

detectron2 calls the factor function with a parameter's full name only, so the layer of a name is
asked of a reference core ViT of the same depth: :meth:`ViT.get_layer_depth` depends on nothing
but the depth, and using it keeps one definition of "layer" for mmengine and detectron2 alike.
Needs only torch (no detectron2), so configs and tests can use it anywhere.
"""
import functools

from ..models.vit import ViT

VITDET_PREFIX = 'backbone.net.'


@functools.lru_cache(maxsize=None)
def _reference_vit(depth: int) -> ViT:
    """A minimal ViT (width 1, one patch) with ``depth`` blocks, used only for ``get_layer_depth``."""
    return ViT(arch=dict(embed_dim=1, depth=depth, num_heads=1), img_size=16, patch_size=16,
               pretrain_img_size=16)


def vit_lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12,
                      prefix: str = VITDET_PREFIX) -> float:
    """lr factor of parameter ``name``: ``lr_decay_rate ** (depth + 1 - layer)``.

    Layers are the ViT's (``prefix`` + ``pos_embed``/``patch_embed`` 0, ``blocks.i`` i+1);
    every parameter outside the ViT (pyramid, RPN, heads) keeps factor 1. ``num_layers`` is the
    number of ViT blocks (12 for Ti, S and B), as in detectron2's ``get_vit_lr_decay_rate``.
    """
    layer_id, total = _reference_vit(num_layers).get_layer_depth(name, prefix)
    return lr_decay_rate ** (total - 1 - layer_id)
