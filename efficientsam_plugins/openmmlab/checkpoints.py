"""mmengine checkpoints: ``zoo://NAME`` in ``init_cfg``, and loading with ``weights_only=True``.

``zoo://NAME`` works in any ``init_cfg=dict(type='Pretrained', checkpoint='zoo://...')``: checkpoints
holding a ViT of the core's layout (EfficientSAM) come back as its backbone under plain names, which
is what a backbone's ``init_cfg`` loads; others (SAM teachers, whose position embedding is a 4-D
grid) are returned as stored.

Loading with ``weights_only=True`` (torch >= 2.6 default):

mmengine 0.10 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means
``weights_only=True``, which rejects what mmengine writes besides tensors: the message hub's
``HistoryBuffer`` objects, numpy arrays and scalars in the logs, and, inside each
``HistoryBuffer``, its class-level statistics functions, which pickle as ``getattr(cls, name)``.
Allowing ``getattr`` would let a checkpoint reach any attribute of any allowed object, so instead
:func:`enable_weights_only_checkpoints`

* pickles ``HistoryBuffer`` without those functions (its ``__setstate__`` restores them from the
  class), and
* allow-lists exactly ``HistoryBuffer`` and the numpy array/scalar/dtype reconstructors.

Checkpoints written after this call (``tools/train.py`` makes it before building the runner, and
the toolbox adapters on import) load back on torch 2.9 with the safe loader; arbitrary pickled
code is still refused.
"""
from typing import Any, Dict, List

import numpy as np
import torch
from mmengine.runner import CheckpointLoader

from ..models.checkpoint import load_checkpoint
from ..models.convert import to_backbone_checkpoint

_enabled = False


def _numpy_globals() -> List[object]:
    core = getattr(np, '_core', None)
    multiarray = getattr(core, 'multiarray', None) or np.core.multiarray
    found = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    found += [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSMm']
    return found


def mmengine_checkpoint_globals() -> List[object]:
    """The non-tensor classes that mmengine's checkpoints contain."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer] + _numpy_globals()


def _history_buffer_state(self) -> Dict[str, Any]:
    """``HistoryBuffer`` state without the class-level statistics functions."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def enable_weights_only_checkpoints() -> None:
    """Makes mmengine checkpoints safe-loadable (see the module docstring); idempotent."""
    global _enabled
    if _enabled:
        return
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _enabled = True


@CheckpointLoader.register_scheme(prefixes='zoo://', force=True)
def load_from_zoo(filename: str, map_location=None):
    checkpoint = load_checkpoint(filename)
    try:
        backbone = to_backbone_checkpoint(checkpoint, 'vit')
    except ValueError:  # no ViT in it
        return checkpoint
    pos_embed = backbone['state_dict'].get('pos_embed')
    return backbone if pos_embed is not None and pos_embed.ndim == 3 else checkpoint
