"""Reading checkpoint files and loading them strictly, with errors that name the problem."""
import os
import pickle
import struct
import zipfile
from typing import Any, Dict, Mapping, Union

import torch
import torch.nn as nn

CheckpointSource = Union[str, os.PathLike, Mapping[str, Any]]


def read_checkpoint(source: CheckpointSource) -> Dict[str, Any]:
    """A checkpoint as a dict: ``source`` is a file path or an already-loaded dict.

    Files are read with ``weights_only=True`` (tensors and plain containers only).
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError,
            IndexError, KeyError, struct.error, AssertionError) as err:  # all seen on damaged bytes
        raise ValueError(f'cannot read checkpoint {path}: corrupt, truncated, not a PyTorch file, or '
                         f'holding objects other than tensors and plain containers '
                         f'({type(err).__name__}: {err})') from err
    if not isinstance(obj, Mapping):
        raise ValueError(f'checkpoint {path} holds a {type(obj).__name__}, not a dict of tensors')
    return dict(obj)


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    """Fails at once on a path that cannot be a ``torch.save`` file (missing, truncated, another
    kind of file), for callers that load it only later, after building models and data.

    Looks only at the zip directory (or, for the legacy format, the first byte), not the tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            names = []
        if any(name == 'data.pkl' or name.endswith('/data.pkl') for name in names):
            return
    else:
        with open(path, 'rb') as file:
            if file.read(1) == pickle.PROTO:  # torch.save(..., _use_new_zipfile_serialization=False)
                return
    raise ValueError(f'{what} {path} is not a PyTorch checkpoint: not a complete torch.save file '
                     f'(truncated, or another kind of file)')


def resolve_checkpoint(source: CheckpointSource) -> Dict[str, Any]:
    """Reads a checkpoint given as a dict, a path, a URL or ``zoo://NAME`` (downloaded, verified)."""
    if isinstance(source, Mapping):
        return dict(source)
    source = os.fspath(source)
    if source.startswith(('zoo://', 'http://', 'https://', 'file://')):
        from ..zoo import get_checkpoint
        source = get_checkpoint(source[len('zoo://'):] if source.startswith('zoo://') else source)
    return read_checkpoint(source)


def extract_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: under ``model`` / ``state_dict``, or the dict itself."""
    for key in ('model', 'state_dict'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    raise ValueError(f'no state dict found in checkpoint with keys {sorted(checkpoint)[:10]}; '
                     f'expected a "model" or "state_dict" entry or a flat dict of tensors')


def _summary(names, limit: int = 8) -> str:
    names = sorted(names)
    more = f' ... (+{len(names) - limit} more)' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           what: str = 'checkpoint') -> None:
    """``module.load_state_dict(strict=True)`` with one error listing every mismatch."""
    own = module.state_dict()
    missing = set(own) - set(state_dict)
    unexpected = set(state_dict) - set(own)
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
              for k in sorted(set(own) & set(state_dict)) if state_dict[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing keys ({_summary(missing)})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys ({_summary(unexpected)})')
    if shapes:
        problems.append(f'{len(shapes)} shape mismatches ({"; ".join(shapes[:5])})')
    if problems:
        raise ValueError(f'{what} does not match {type(module).__name__}: ' + '; '.join(problems))
    module.load_state_dict(state_dict, strict=True)
