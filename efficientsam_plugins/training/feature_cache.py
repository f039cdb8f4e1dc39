"""On-disk store of teacher features: fp16 maps in safetensors shards, each with an index.

Layout of a cache directory::

    meta.json                              format, teacher description, whole-image size, stored
                                           map size, image root
    shards/<rank>-<run>-<n>.safetensors    fp16 maps keyed by image key
    shards/<rank>-<run>-<n>.json           index: the shard's keys, size and sha256; written last,
                                           so its presence marks a complete shard

Every rank writes its own shards (names carry the rank and a per-run id), so several ranks and
resumed runs never write the same file; shards without an index and temporary files are never
read. safetensors checks a shard's header on every read, the index its size, and
:meth:`TeacherFeatureCache.verify` its hash; a corrupt shard raises :class:`FeatureCacheError`.
"""
import glob
import json
import os
import uuid
from typing import Any, Dict, Iterable, List, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..fileio import atomic_write, atomic_write_json, sha256_file

# v3: maps at the teacher's native resolution by default (v2 stored the student's 14x14 grid, which
# small crops upsample) and meta.json records the stored map size.
FORMAT = 'efficientsam_plugins/teacher-feature-cache/v3'
META_FILE = 'meta.json'
SHARD_DIR = 'shards'
_RERUN = 'run tools/extract_teacher_features.py again: it resumes and recomputes missing shards'


class FeatureCacheError(RuntimeError):
    """A cache that is missing, corrupt, incomplete or made for another teacher."""


def ensure_meta(root: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Creates ``meta.json`` or checks that an existing one matches ``meta``."""
    os.makedirs(os.path.join(root, SHARD_DIR), exist_ok=True)
    meta = json.loads(json.dumps(dict(meta, format=FORMAT)))  # as it reads back: tuples become lists
    if not os.path.isfile(os.path.join(root, META_FILE)):
        atomic_write_json(os.path.join(root, META_FILE), meta, indent=1)
        return meta
    existing = read_meta(root)
    if existing != meta:
        diff = sorted(k for k in set(existing) | set(meta) if existing.get(k) != meta.get(k))
        raise FeatureCacheError(
            f'the cache at {root} was made with different settings ({", ".join(diff)}): '
            f'cache {[existing.get(k) for k in diff]} vs now {[meta.get(k) for k in diff]}; '
            f'use another output directory')
    return meta


def read_meta(root: str) -> Dict[str, Any]:
    path = os.path.join(root, META_FILE)
    if not os.path.isfile(path):
        raise FeatureCacheError(f'no teacher-feature cache at {root}: {META_FILE} is missing '
                                f'(create one with tools/extract_teacher_features.py)')
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise FeatureCacheError(f'{path} is unreadable ({err})') from err
    if meta.get('format') != FORMAT:
        raise FeatureCacheError(f'{path} has format {meta.get("format")!r}, expected {FORMAT!r}: '
                                f'extract the cache again into a new folder with '
                                f'tools/extract_teacher_features.py')
    return meta


def incomplete_shards(root: str) -> List[str]:
    """Files left by interrupted writers: temporary files and shards without an index."""
    shard_dir = os.path.join(root, SHARD_DIR)
    orphans = [p for p in glob.glob(os.path.join(shard_dir, '*.safetensors'))
               if not os.path.isfile(os.path.splitext(p)[0] + '.json')]
    return sorted(glob.glob(os.path.join(shard_dir, '.*.tmp')) + orphans)


def _load_index(index_path: str) -> Dict[str, Any]:
    try:
        with open(index_path) as f:
            index = json.load(f)
        shard = dict(path=os.path.join(os.path.dirname(index_path), index['shard']), keys=list(index['keys']),
                     nbytes=int(index['nbytes']), sha256=index['sha256'])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FeatureCacheError(f'shard index {index_path} is corrupt ({err}); delete it and its '
                                f'.safetensors, then {_RERUN}') from err
    size = os.path.getsize(shard['path']) if os.path.isfile(shard['path']) else None
    if size != shard['nbytes']:
        state = 'missing' if size is None else f'{size} bytes, the index says {shard["nbytes"]}'
        raise FeatureCacheError(f'shard {shard["path"]} is incomplete or corrupt ({state}); delete it '
                                f'and its .json, then {_RERUN}')
    return shard


class FeatureCacheWriter:
    """Collects this rank's fp16 maps into shards of ``records_per_shard`` (the unit of
    resumption, held in memory); a shard becomes visible when its index is written. ``meta`` must
    equal that of an existing cache in ``root``."""

    def __init__(self, root: str, meta: Mapping[str, Any], rank: int = 0,
                 records_per_shard: int = 256) -> None:
        self.root, self.rank, self.records_per_shard = root, rank, records_per_shard
        self.meta = ensure_meta(root, meta)
        self._run, self._count = uuid.uuid4().hex[:8], 0
        self._maps: Dict[str, torch.Tensor] = {}

    def add(self, key: str, features: torch.Tensor) -> None:
        """Stores one image's map ``[C, h, w]`` (converted to fp16) under ``key``."""
        # a copy of its own: safetensors refuses maps that share memory (rows of one batch)
        self._maps[key] = features.detach().to('cpu', torch.float16).clone(memory_format=torch.contiguous_format)
        if len(self._maps) >= self.records_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._maps:
            return
        name = f'r{self.rank:04d}-{self._run}-{self._count:05d}'
        self._count += 1
        path = os.path.join(self.root, SHARD_DIR, name + '.safetensors')
        atomic_write(path, lambda tmp: save_file(self._maps, tmp))
        atomic_write_json(os.path.join(self.root, SHARD_DIR, name + '.json'), dict(
            format=FORMAT, shard=os.path.basename(path), keys=list(self._maps),
            nbytes=os.path.getsize(path), sha256=sha256_file(path)))
        self._maps = {}

    def __enter__(self) -> 'FeatureCacheWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()


class TeacherFeatureCache:
    """Reads a cache (safe in DataLoader workers: each read opens its shard)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.meta = read_meta(root)
        self.incomplete = incomplete_shards(root)
        self._shards = [_load_index(p) for p in sorted(glob.glob(os.path.join(root, SHARD_DIR, '*.json')))]
        self._shard_of: Dict[str, str] = {}
        for shard in self._shards:  # a key stored twice is read from its first shard
            self._shard_of.update((k, shard['path']) for k in shard['keys'] if k not in self._shard_of)

    def __len__(self) -> int:
        return len(self._shard_of)

    def __contains__(self, key: str) -> bool:
        return key in self._shard_of

    def keys(self) -> Iterable[str]:
        return self._shard_of.keys()

    def get(self, key: str) -> torch.Tensor:
        """The fp16 map ``[C, h, w]`` stored under ``key``."""
        if key not in self._shard_of:
            hint = (f'; {len(self.incomplete)} incomplete shard(s) show an interrupted extraction, '
                    f'{_RERUN}' if self.incomplete else '')
            raise KeyError(f'{key!r} is not in the teacher-feature cache {self.root} '
                           f'({len(self._shard_of)} images){hint}')
        path = self._shard_of[key]
        try:
            with safe_open(path, framework='pt') as f:
                return f.get_tensor(key)
        except (SafetensorError, OSError) as err:
            raise FeatureCacheError(f'shard {path} is corrupt ({err}); delete it and its .json, '
                                    f'then {_RERUN}') from err

    def verify(self) -> List[str]:
        """Re-hashes every shard; returns one line per problem (empty when all is well)."""
        return [f'incomplete shard file {p}' for p in self.incomplete] + [
            f'{s["path"]}: sha256 mismatch (corrupt)' for s in self._shards if sha256_file(s['path']) != s['sha256']]


def image_key(img_path: str, image_root: str) -> str:
    """The cache key of an image: its path relative to ``image_root``, with ``/`` separators."""
    rel = os.path.relpath(os.path.abspath(img_path), os.path.abspath(image_root))
    if rel == '..' or rel.startswith('..' + os.sep):
        raise ValueError(f'image {img_path} lies outside the cache\'s image root {image_root}')
    return rel.replace(os.sep, '/')
