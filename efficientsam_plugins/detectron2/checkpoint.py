"""detectron2 checkpoint loading for SAMI pretraining, EfficientSAM, MAE/timm and model-zoo weights.

:class:`SAMICheckpointer` is a ``DetectionCheckpointer`` that converts ViT-only checkpoints with
the project's one converter (:func:`efficientsam_plugins.models.convert.vit_state_dict`) and maps
them under the detector's ViT (``backbone.net.``), resizing position tables and reporting what it
leaves at initialisation. Checkpoints of the whole detector (resume, ``--eval-only``) load as
saved. Importing this module registers ``zoo://NAME`` with detectron2's ``PathManager``.
"""
import importlib.util
from typing import Any, Dict, Optional, Tuple

import torch.nn as nn

from ._dependency import require_detectron2

require_detectron2()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402
from iopath.common.file_io import PathHandler  # noqa: E402

from ..models.checkpoint import checkpoint_path, extract_state_dict, load_checkpoint  # noqa: E402
from ..models.convert import find_vit_prefix, vit_state_dict  # noqa: E402
from ..models.vit import ViT  # noqa: E402


class ZooPathHandler(PathHandler):
    """``zoo://NAME`` -> the verified local file of the project's model zoo (downloaded when needed)."""

    PREFIX = 'zoo://'

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        return checkpoint_path(path)

    def _open(self, path: str, mode: str = 'r', buffering: int = -1, **kwargs: Any):
        return PathManager.open(self._get_local_path(path), mode, buffering=buffering, **kwargs)


PathManager.register_handler(ZooPathHandler())


def find_vit(model: nn.Module) -> Tuple[Optional[ViT], str]:
    """The model's (first) core ViT and the prefix of its parameters, e.g. ``'backbone.net.'``."""
    for name, module in model.named_modules():
        if isinstance(module, ViT):
            return module, f'{name}.' if name else ''
    return None, ''


class SAMICheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that also loads ViT-only checkpoints into the detector's ViT.

    Recognised: SAMI pretraining / mmengine (``backbone.``, under ``state_dict``), official
    EfficientSAM (``image_encoder.``, under ``model``), MAE/timm (no prefix), as paths, URLs or
    ``zoo://NAME``, and ViT-only detectron2 checkpoints (``backbone.net.``, e.g. from
    ``tools/convert_checkpoint.py --target detectron2``). The keys of the ViT that the checkpoint does not provide (relative-position
    tables) are logged; everything outside the ViT (pyramid, heads) stays at its initialisation,
    which detectron2 logs as usual.
    """

    def _torch_load(self, filename: str) -> Dict[str, Any]:
        """The package's reader (``weights_only``, errors naming the file), also admitting the
        message-hub and numpy objects of mmengine checkpoints (SAMI pretraining) where mmengine is
        installed, see :mod:`efficientsam_plugins.openmmlab.checkpoints`."""
        if importlib.util.find_spec('mmengine') is not None:
            from ..openmmlab.checkpoints import enable_weights_only_checkpoints
            enable_weights_only_checkpoints()
        return load_checkpoint(filename)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        loaded = super()._load_file(filename)
        vit, vit_prefix = find_vit(self.model)
        if vit is None:
            return loaded
        try:
            state_dict = extract_state_dict(loaded['model'])
            source_prefix = find_vit_prefix(state_dict)
        except ValueError:
            return loaded
        if source_prefix == vit_prefix and any(not key.startswith(vit_prefix) for key in state_dict):
            return loaded  # a checkpoint of the whole detector (resume, evaluation): load as saved
        converted, initialised = vit_state_dict(state_dict, vit, source_prefix)
        self.logger.info(f'{filename}: converted the ViT under {source_prefix!r} to {vit_prefix!r} '
                         f'({len(converted)} tensors)')
        if initialised:
            self.logger.info(f'{filename}: left at initialisation (not in the checkpoint): '
                             f'{", ".join(vit_prefix + key for key in initialised)}')
        return {'model': {vit_prefix + key: value for key, value in converted.items()},
                '__author__': 'efficientsam_plugins', 'matching_heuristics': False}
