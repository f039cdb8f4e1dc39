"""detectron2 adapter: the core ViT and simple pyramid as detectron2 backbones, a checkpointer that
reads SAMI / EfficientSAM / zoo checkpoints, the ViT layer-decay lr factor and a LazyConfig launcher.

detectron2 is optional and imported lazily: importing this package (and ``.launch``, which
``tools/train.py`` consults for every config) works without it; touching one of the names below
imports detectron2 then, and fails with an ImportError that says how to install it.
"""
import importlib
from typing import Any

_EXPORTS = {
    'SAMIViTNet': 'backbone',
    'SAMISimpleFeaturePyramid': 'backbone',
    'add_sami_config': 'backbone',
    'build_sami_vit_backbone': 'backbone',
    'build_sami_vitdet_backbone': 'backbone',
    'SAMICheckpointer': 'checkpoint',
    'ZooPathHandler': 'checkpoint',
    'vit_lr_decay_rate': 'lr_decay',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
    return getattr(module, name)
