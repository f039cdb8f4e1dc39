"""mmengine checkpoints: ``zoo://NAME`` in ``init_cfg``, and loading with ``weights_only=True``.

``init_cfg=dict(type='Pretrained', checkpoint='zoo://NAME')``: a checkpoint holding a ViT of the
core's layout (EfficientSAM) comes back as that backbone under plain names, which is what a
backbone's ``init_cfg`` loads; others (SAM teachers, with a 4-D position grid) come back as stored.

Since torch 2.6, mmengine 0.10's ``torch.load`` means ``weights_only=True``, which rejects what
mmengine writes besides tensors: the message hub's ``HistoryBuffer`` objects, numpy arrays and
scalars, and, inside each ``HistoryBuffer``, its class-level statistics functions, which pickle as
``getattr(cls, name)``. Allowing ``getattr`` would let a checkpoint reach any attribute of any
allowed object, so :func:`enable_weights_only_checkpoints` instead pickles ``HistoryBuffer``
without those functions (its ``__setstate__`` restores them from the class) and allow-lists exactly
``HistoryBuffer`` and numpy's array/scalar/dtype reconstructors. Checkpoints written after the call
(the launcher and the toolbox adapters make it) load with the safe loader.
"""
import functools
from typing import Any, Dict

import numpy as np
import torch
from mmengine.runner import CheckpointLoader

from ..checkpoint import load_checkpoint
from ..convert import to_backbone_checkpoint


def _history_buffer_state(self) -> Dict[str, Any]:
    """``HistoryBuffer`` state without the class-level statistics functions."""
    return {key: value for key, value in self.__dict__.items() if key != 'statistics_methods'}


@functools.lru_cache(maxsize=None)  # once
def enable_weights_only_checkpoints() -> None:
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state
    multiarray = getattr(getattr(np, '_core', None), 'multiarray', None) or np.core.multiarray
    torch.serialization.add_safe_globals(
        [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
        + [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSMm'])


@CheckpointLoader.register_scheme(prefixes='zoo://', force=True)
def load_from_zoo(filename: str, map_location=None):
    checkpoint = load_checkpoint(filename)
    try:
        backbone = to_backbone_checkpoint(checkpoint, 'vit')
    except ValueError:  # no ViT in it
        return checkpoint
    pos_embed = backbone['state_dict'].get('pos_embed')
    return backbone if pos_embed is not None and pos_embed.ndim == 3 else checkpoint
