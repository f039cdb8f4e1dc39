"""Initialising the finetuned model from SAMI / EfficientSAM checkpoints, and saving it in the
official EfficientSAM layout (``{"model": state_dict}``, loadable by ``build_efficient_sam``)."""
import json
import os
from typing import Any, List, Mapping, Optional, Sequence

import torch.nn as nn

from ..mmengine.checkpoints import enable_weights_only_checkpoints
from ..models.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_strict
from ..models.convert import config_path_of, save_official_efficientsam
from ..models.efficient_sam import EfficientSam, build_efficient_sam

enable_weights_only_checkpoints()  # SAMI pretraining checkpoints are mmengine checkpoints


def load_prefixed(module: nn.Module, checkpoint: str, prefix: str, allow_missing: Sequence[str] = (),
                  ignore_unexpected: Sequence[str] = (), what: str = 'module') -> List[str]:
    """Loads the ``prefix``-ed entries of a checkpoint (path, URL or zoo name) into ``module``.

    Keys of ``module`` starting with one of ``allow_missing`` may be absent (they keep their
    initialisation, e.g. the ``neck.`` of an encoder pretrained without it); checkpoint keys under
    the prefix starting with one of ``ignore_unexpected`` are dropped. Anything else that does
    not match (missing, unexpected, wrong shape) raises, naming the keys. Returns the keys left
    at initialisation.
    """
    source = f'{what} weights from {checkpoint}'
    weights = extract_state_dict(load_checkpoint(checkpoint), prefix, source)
    weights = {k: v for k, v in weights.items() if not k.startswith(tuple(ignore_unexpected))}
    return load_state_dict_strict(module, weights, f'{source} (prefix {prefix!r})', allow_missing=allow_missing)


def export_official_checkpoint(model: EfficientSam, path: str,
                               config: Optional[Mapping[str, Any]] = None) -> str:
    """Saves ``{"model": state_dict}`` atomically; with ``config`` (a name or dict), also
    ``<path>.config.json``: the full architecture, for :func:`load_exported`."""
    return save_official_efficientsam(model.state_dict(), path, config)


def load_exported(path: str, config: Optional[Any] = None) -> EfficientSam:
    """Builds the model of an exported checkpoint, reading ``<path>.config.json`` when no config is given."""
    if config is None:
        sidecar = config_path_of(path)
        if not os.path.isfile(sidecar):
            raise FileNotFoundError(f'no config given and no {sidecar} beside {path}')
        with open(sidecar, encoding='utf-8') as f:
            config = json.load(f)
    return build_efficient_sam(config, path)
