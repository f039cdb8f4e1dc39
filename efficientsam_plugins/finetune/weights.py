"""Initialising the finetuned model from SAMI / EfficientSAM checkpoints, and saving it in the
official EfficientSAM layout (``{"model": state_dict}``, loadable by ``build_efficient_sam``)."""
import collections
import importlib
import json
import os
import pickle
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from ..models.checkpoint import extract_state_dict, read_checkpoint
from ..models.efficient_sam import EfficientSam, build_efficient_sam, resolve_config


def resolve_checkpoint_path(spec: str) -> str:
    """A local file, or a model-zoo name (``efficientsam_ti``, ...) fetched into the cache."""
    if os.path.isfile(spec):
        return spec
    if os.sep in spec or spec.endswith(('.pt', '.pth')):
        raise FileNotFoundError(f'checkpoint file not found: {spec}')
    from ..zoo import get_checkpoint
    return get_checkpoint(spec)


class _Opaque:
    """Stands in for every non-tensor object of a training checkpoint (message hub, numpy
    history, config): created, never executed, then ignored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> '_Opaque':
        return _Opaque()


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Resolves only torch's tensor-rebuilding functions, dtypes and OrderedDict; any other global
    becomes :class:`_Opaque`, so loading runs no code from the file."""

    def find_class(self, module: str, name: str) -> Any:
        if module == 'collections' and name == 'OrderedDict':
            return collections.OrderedDict
        if module.split('.')[0] == 'torch' and (name.startswith('_rebuild') or name in _TORCH_VALUE_TYPES):
            return getattr(importlib.import_module(module), name)
        return _Opaque


_TORCH_VALUE_TYPES = {'Size', 'device'} | {str(d).split('.')[-1] for d in (
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool)}


class _TensorsOnlyPickleModule:
    Unpickler = _TensorsOnlyUnpickler
    load = staticmethod(pickle.load)


def read_weights(path: str) -> Dict[str, torch.Tensor]:
    """The state dict of an official checkpoint, an mmengine/mmpretrain training checkpoint (whose
    message hub holds numpy and mmengine objects that ``weights_only`` loading refuses) or a flat
    dict of tensors; nothing in the file is executed."""
    try:
        return extract_state_dict(read_checkpoint(path))
    except ValueError as err:
        if not isinstance(err.__cause__, pickle.UnpicklingError):
            raise
    checkpoint = torch.load(path, map_location='cpu', weights_only=False,
                            pickle_module=_TensorsOnlyPickleModule)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'checkpoint {path} holds a {type(checkpoint).__name__}, not a dict')
    return extract_state_dict({k: v for k, v in checkpoint.items() if not isinstance(v, _Opaque)})


def load_prefixed(module: nn.Module, checkpoint: str, prefix: str, allow_missing: Sequence[str] = (),
                  ignore_unexpected: Sequence[str] = (), what: str = 'module') -> Dict[str, int]:
    """Loads the ``prefix``-ed entries of a checkpoint into ``module``.

    Keys of ``module`` starting with one of ``allow_missing`` may be absent (they keep their
    initialisation, e.g. the ``neck.`` of an encoder pretrained without it); checkpoint keys under
    the prefix starting with one of ``ignore_unexpected`` are dropped. Anything else that does
    not match (missing, unexpected, wrong shape) raises, naming the keys.
    """
    path = resolve_checkpoint_path(checkpoint)
    source = read_weights(path)
    weights = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f'checkpoint {path} has no keys under prefix {prefix!r} for the {what}; '
                         f'its keys start like {sorted(source)[:5]}')
    weights = {k: v for k, v in weights.items() if not k.startswith(tuple(ignore_unexpected))}
    own = module.state_dict()
    missing = sorted(k for k in set(own) - set(weights) if not k.startswith(tuple(allow_missing)))
    unexpected = sorted(set(weights) - set(own))
    shapes = sorted(f'{k}: {tuple(weights[k].shape)} vs {tuple(own[k].shape)}'
                    for k in set(own) & set(weights) if weights[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(f'{what} weights from {path} (prefix {prefix!r}) do not fit: '
                         f'missing {missing[:8]}, unexpected {unexpected[:8]}, shape mismatches '
                         f'{shapes[:5]}; use allow_missing / ignore_unexpected for intended gaps')
    module.load_state_dict(weights, strict=False)
    return dict(loaded=len(weights), kept_initialisation=len(set(own) - set(weights)))


def export_official_checkpoint(model: EfficientSam, path: str,
                               config: Optional[Mapping[str, Any]] = None) -> str:
    """Saves ``{"model": state_dict}`` atomically; with ``config`` (a name or dict), also
    ``<path>.config.json``: the full architecture, for :func:`load_exported`."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _atomic_torch_save({'model': state}, path)
    if config is not None:
        from ..fileio import atomic_write_json
        atomic_write_json(config_path_of(path), resolve_config(config), indent=2)
    return path


def config_path_of(checkpoint_path: str) -> str:
    return os.path.splitext(checkpoint_path)[0] + '.config.json'


def convert_mmengine_checkpoint(src: str, dst: str, config: Optional[Any] = None) -> str:
    """An mmengine checkpoint of :class:`EfficientSamFinetuner` (``state_dict`` with ``model.``
    keys) to the official layout; with ``config`` the result is loaded back to check it."""
    state = read_weights(src)
    model_state = {k[len('model.'):]: v for k, v in state.items() if k.startswith('model.')}
    if not model_state:
        raise ValueError(f'{src} has no "model." weights: is it a checkpoint of EfficientSamFinetuner?')
    if config is not None:
        build_efficient_sam(config, {'model': model_state})
    _atomic_torch_save({'model': model_state}, dst)
    if config is not None:
        from ..fileio import atomic_write_json
        atomic_write_json(config_path_of(dst), resolve_config(config), indent=2)
    return dst


def load_exported(path: str, config: Optional[Any] = None) -> EfficientSam:
    """Builds the model of an exported checkpoint, reading ``<path>.config.json`` when no config is given."""
    if config is None:
        sidecar = config_path_of(path)
        if not os.path.isfile(sidecar):
            raise FileNotFoundError(f'no config given and no {sidecar} beside {path}')
        with open(sidecar, encoding='utf-8') as f:
            config = json.load(f)
    return build_efficient_sam(config, path)


def _atomic_torch_save(obj: Any, path: str) -> None:
    from ..fileio import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
