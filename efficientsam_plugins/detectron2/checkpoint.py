"""detectron2 checkpoint loading for SAMI pretraining, EfficientSAM, MAE/timm and model-zoo weights;
importing this module registers ``zoo://NAME`` with detectron2's ``PathManager``."""
import importlib.util
from typing import Any, Dict

from ._dependency import require_detectron2

require_detectron2()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402
from iopath.common.file_io import PathHandler  # noqa: E402

from ..checkpoint import checkpoint_path, extract_state_dict, load_checkpoint  # noqa: E402
from ..convert import find_vit_prefix, vit_state_dict  # noqa: E402
from ..modeling.vit import ViT  # noqa: E402


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


class SAMICheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that also loads ViT-only checkpoints into the detector's ViT.

    ViT-only checkpoints -- SAMI pretraining (``backbone.``), official EfficientSAM
    (``image_encoder.``), MAE/timm (no prefix), ``tools/convert_checkpoint.py --target detectron2``
    (``backbone.net.``) -- go through the one converter (``models.convert.vit_state_dict``: position
    tables resized, ViT keys it lacks logged); the detector's other parts stay initialised.
    Checkpoints of the whole detector (resume, ``--eval-only``) load as saved.
    """

    def _torch_load(self, filename: str) -> Dict[str, Any]:
        """The package's reader (``weights_only``), admitting mmengine checkpoints' message hub where
        mmengine is installed (SAMI pretraining, see :mod:`..openmmlab.checkpoints`)."""
        if importlib.util.find_spec('mmengine') is not None:
            from ..openmmlab.checkpoints import enable_weights_only_checkpoints
            enable_weights_only_checkpoints()
        return load_checkpoint(filename)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        loaded = super()._load_file(filename)
        name, vit = next(((n, m) for n, m in self.model.named_modules() if isinstance(m, ViT)), ('', None))
        if vit is None:
            return loaded
        vit_prefix = f'{name}.' if name else ''  # e.g. 'backbone.net.'
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
