"""detectron2 adapter: the core ViT and simple pyramid as detectron2 backbones, a checkpointer that
reads SAMI / EfficientSAM / zoo checkpoints, the ViT layer-decay lr factor and a LazyConfig launcher.

detectron2 is optional: this package (and ``.launch``, which ``tools/train.py`` imports for its
``--framework`` choice) imports without it; the names below import it when touched, with an ImportError that says
how to install it.
"""
import importlib
from typing import Any

_EXPORTS = {name: module for module, names in (
    ('backbone',
     'SAMIViTNet SAMISimpleFeaturePyramid add_sami_config build_sami_vit_backbone build_sami_vitdet_backbone'),
    ('checkpoint', 'SAMICheckpointer ZooPathHandler'), ('lr_decay', 'vit_lr_decay_rate')) for name in names.split()}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
