"""The one checkpoint path: any source to a checkpoint dict, and one strict loader whose error
names every mismatch. Builders, adapters and converters all go through it."""
import os
import pickle
import struct
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from .fileio import atomic_write

CheckpointSource = Union[str, os.PathLike, Mapping[str, Any]]
# What torch.load raises on damaged bytes or (weights_only) on objects that are not allow-listed.
_READ_ERRORS = (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError,
                IndexError, KeyError, struct.error, AssertionError)


def checkpoint_path(source: Union[str, os.PathLike]) -> str:
    """The local file of a path, a URL or a (``zoo://``) zoo name, downloaded and verified by the
    model zoo; a string that looks like a path (a separator, ``.pt``/``.pth``) must be a file."""
    path = os.fspath(source)
    if os.path.isfile(path):
        return path
    if '://' not in path and ('/' in path or os.sep in path or path.endswith(('.pt', '.pth'))):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    from .zoo import get_checkpoint  # zoo names (``zoo://`` or bare) and URLs
    return get_checkpoint(path)


def load_checkpoint(source: CheckpointSource) -> Dict[str, Any]:
    """A checkpoint dict from a dict, a path, a URL or a zoo name; files are read with
    ``weights_only=True`` (plus the allow-list of :mod:`efficientsam_plugins.openmmlab.checkpoints`)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = checkpoint_path(source)
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except _READ_ERRORS as err:
        raise ValueError(f'cannot read checkpoint {path}: corrupt, truncated, not a PyTorch file, or '
                         f'holding objects other than tensors and plain containers '
                         f'({type(err).__name__}: {err})') from err
    if not isinstance(obj, Mapping):
        raise ValueError(f'checkpoint {path} holds a {type(obj).__name__}, not a dict of tensors')
    return dict(obj)


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    """Fails at once on a file that cannot be a ``torch.save`` file, for tools that load it only
    after building models and data; reads the zip directory (legacy format: the first byte)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        with zipfile.ZipFile(path) as archive:
            complete = any(name.endswith('data.pkl') for name in archive.namelist())
    except zipfile.BadZipFile:
        with open(path, 'rb') as file:
            complete = file.read(1) == pickle.PROTO  # torch.save(..., _use_new_zipfile_serialization=False)
    if not complete:
        raise ValueError(f'{what} {path} is not a PyTorch checkpoint: not a complete torch.save file '
                         f'(truncated, or another kind of file)')


def extract_state_dict(checkpoint: Mapping[str, Any], prefix: str = '',
                       what: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint (under ``model`` / ``state_dict``, or the dict itself);
    with ``prefix``, only its keys under the prefix, which is stripped."""
    state_dict = next((dict(checkpoint[key]) for key in ('model', 'state_dict')
                       if isinstance(checkpoint.get(key), Mapping)), None)
    if state_dict is None:
        if not (checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())):
            raise ValueError(f'no state dict found in {what} with keys {sorted(checkpoint)[:10]}; '
                             f'expected a "model" or "state_dict" entry or a flat dict of tensors')
        state_dict = dict(checkpoint)
    if not prefix:
        return state_dict
    inner = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not inner:
        raise ValueError(f'{what} has no keys under prefix {prefix!r}; its keys start like '
                         f'{sorted(state_dict)[:5]}')
    return inner


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = 'checkpoint',
                     target: Optional[str] = None, allow_missing: Sequence[str] = ()) -> List[str]:
    """The one mismatch report: raises a ValueError naming every shape mismatch, missing and
    unexpected key of ``state_dict`` against ``module``; returns the missing keys that
    ``allow_missing`` (key prefixes) lets keep their initialisation."""
    own = module.state_dict()
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}'
              for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    missing = [k for k in own if k not in state_dict]
    kept = [k for k in missing if k.startswith(tuple(allow_missing))]
    problems = []
    for name, keys, sep in (('shape mismatches', shapes, '; '),
                            ('missing keys', [k for k in missing if k not in kept], ', '),
                            ('unexpected keys', [k for k in state_dict if k not in own], ', ')):
        if keys:
            more = f' ... (+{len(keys) - 6} more)' if len(keys) > 6 else ''
            problems.append(f'{name} ({sep.join(keys[:6])}{more})')
    if problems:
        raise ValueError(f'{what} does not match {target or type(module).__name__}: ' + '; '.join(problems))
    return kept


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = 'checkpoint',
                           target: Optional[str] = None, allow_missing: Sequence[str] = ()) -> List[str]:
    """Loads ``state_dict`` after :func:`check_state_dict`; returns the keys left at initialisation."""
    kept = check_state_dict(module, state_dict, what, target, allow_missing)
    module.load_state_dict(state_dict, strict=False)
    return kept


def load_prefixed(module: nn.Module, checkpoint: CheckpointSource, prefix: str, allow_missing: Sequence[str] = (),
                  ignore_unexpected: Sequence[str] = (), what: str = 'module') -> List[str]:
    """Loads the ``prefix``-ed entries of a checkpoint into ``module``; its keys under ``allow_missing``
    may keep their initialisation (returned), e.g. the ``neck.`` of an encoder pretrained without
    one, and checkpoint keys under ``ignore_unexpected`` are dropped."""
    source = f'{what} weights from {checkpoint if isinstance(checkpoint, (str, os.PathLike)) else "a dict"}'
    weights = extract_state_dict(load_checkpoint(checkpoint), prefix, source)
    weights = {k: v for k, v in weights.items() if not k.startswith(tuple(ignore_unexpected))}
    return load_state_dict_strict(module, weights, f'{source} (prefix {prefix!r})', allow_missing=allow_missing)


def save_checkpoint(checkpoint: Mapping[str, Any], path: Union[str, os.PathLike]) -> str:
    """``torch.save`` atomically (no partial file on failure), creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(os.fspath(path), lambda tmp: torch.save(dict(checkpoint), tmp))
    return os.fspath(path)
