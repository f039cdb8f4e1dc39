"""The one on-disk store of teacher embeddings: fp16 maps in safetensors shards, each with an index.

Layout of a cache directory::

    meta.json                              format, teacher description and whatever else must match
                                           (SAMI: whole-image size, stored map size, image root)
    shards/<name>.safetensors              fp16 maps keyed by image (view) key
    shards/<name>.json                     index: the shard's keys, size and sha256; written last,
                                           so its presence marks a complete shard

SAMI's extraction fills a cache in bulk (:class:`FeatureCacheWriter`: shards of many maps named
``r<rank>-<run>-<n>``, so ranks and resumed runs never write the same file); SqueezeSAM's
distillation fills one on demand (:meth:`TeacherFeatureCache.embed`: one shard per key, named by
the key's hash, so any rank or later run finds it). Shards without an index and temporary files are
never read. safetensors checks a shard's header on every read and the index its size when the cache
is opened; :meth:`TeacherFeatureCache.check`, which training runs when it opens a cache, re-hashes
every shard, so a damaged, missing or unindexed shard is named before the first iteration.
"""
import contextlib
import glob
import hashlib
import json
import os
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

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


class FeatureCacheError(ValueError):
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
            f'the cache at {root} was made for different settings ({", ".join(diff)}): '
            f'cache {[existing.get(k) for k in diff]} vs now {[meta.get(k) for k in diff]}; '
            f'use another folder for this cache')
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


def _write_shard(root: str, name: str, maps: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Writes fp16 ``maps`` as ``shards/<name>.safetensors``, then its index; returns the index."""
    path = os.path.join(root, SHARD_DIR, name + '.safetensors')
    atomic_write(path, lambda tmp: save_file(dict(maps), tmp))
    index = dict(format=FORMAT, shard=os.path.basename(path), keys=list(maps), nbytes=os.path.getsize(path),
                 sha256=sha256_file(path))
    atomic_write_json(os.path.join(root, SHARD_DIR, name + '.json'), index)
    return dict(index, path=path)


def _fp16(features: torch.Tensor) -> torch.Tensor:
    # a copy of its own: safetensors refuses maps that share memory (rows of one batch)
    return features.detach().to('cpu', torch.float16).clone(memory_format=torch.contiguous_format)


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
        self._maps[key] = _fp16(features)
        if len(self._maps) >= self.records_per_shard:
            self.flush()

    def flush(self) -> None:
        if self._maps:
            _write_shard(self.root, f'r{self.rank:04d}-{self._run}-{self._count:05d}', self._maps)
            self._count, self._maps = self._count + 1, {}

    def __enter__(self) -> 'FeatureCacheWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()


class TeacherFeatureCache:
    """A cache opened for reading (``meta`` None: it must exist) or for filling on demand
    (``meta``: created, or checked against the existing one, whose leftovers of interrupted writes
    are removed). Reads are safe in DataLoader workers: each opens its shard."""

    def __init__(self, root: str, meta: Optional[Mapping[str, Any]] = None) -> None:
        self.root = root
        self.meta = read_meta(root) if meta is None else ensure_meta(root, meta)
        if meta is not None:
            for stale in incomplete_shards(root):  # their keys are computed again when needed
                with contextlib.suppress(FileNotFoundError):  # another rank removed it first
                    os.remove(stale)
        self.incomplete = incomplete_shards(root)
        self._shards: List[Dict[str, Any]] = []
        self._shard_of: Dict[str, str] = {}
        for index in sorted(glob.glob(os.path.join(root, SHARD_DIR, '*.json'))):
            self._add(_load_index(index))

    def _add(self, shard: Dict[str, Any]) -> None:
        self._shards.append(shard)  # a key stored twice is read from its first shard
        self._shard_of.update((k, shard['path']) for k in shard['keys'] if k not in self._shard_of)

    def _key_shard(self, key: str) -> str:
        """The name of the shard that :meth:`embed` writes for ``key`` alone."""
        return 'k-' + hashlib.sha1(key.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._shard_of)

    def __contains__(self, key: str) -> bool:
        if key in self._shard_of:
            return True
        index = os.path.join(self.root, SHARD_DIR, self._key_shard(key) + '.json')
        if os.path.isfile(index):  # written by another rank or run since the cache was opened
            self._add(_load_index(index))
        return key in self._shard_of

    def keys(self) -> Iterable[str]:
        return self._shard_of.keys()

    def get(self, key: str) -> torch.Tensor:
        """The fp16 map ``[C, h, w]`` stored under ``key``."""
        if key not in self:
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

    def embed(self, teacher: Any, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """``[B, C, h, w]`` float embeddings of ``images`` by ``teacher.embed``, read where
        ``keys`` (one per image) are stored; the rest are computed and stored, one shard each."""
        if len(keys) != len(images):
            raise ValueError(f'a teacher-embedding cache needs one key per image: {len(keys)} keys '
                             f'for {len(images)} images')
        found = {i: self.get(key) for i, key in enumerate(keys) if key in self}
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            for i, embedding in zip(missing, teacher.embed(images[missing])):
                self._add(_write_shard(self.root, self._key_shard(keys[i]), {keys[i]: _fp16(embedding)}))
                found[i] = embedding
        return torch.stack([found[i].to(images.device, torch.float32) for i in range(len(keys))])

    def verify(self) -> List[str]:
        """Re-hashes every shard; returns one line per problem (empty when all is well)."""
        return [f'incomplete shard file {p}' for p in self.incomplete] + [
            f'{s["path"]}: sha256 mismatch (corrupt)' for s in self._shards if sha256_file(s['path']) != s['sha256']]

    def check(self) -> 'TeacherFeatureCache':
        """The cache, after :meth:`verify` found nothing; else :class:`FeatureCacheError` naming
        every problem (what training runs when it opens a cache, before its first iteration)."""
        problems = self.verify()
        if problems:
            raise FeatureCacheError(f'the teacher-feature cache {self.root} is damaged: {"; ".join(problems)}; '
                                    f'delete those shards and their .json, then {_RERUN}')
        return self


def image_key(img_path: str, image_root: str) -> str:
    """The cache key of an image: its path relative to ``image_root``, with ``/`` separators."""
    rel = os.path.relpath(os.path.abspath(img_path), os.path.abspath(image_root))
    if rel == '..' or rel.startswith('..' + os.sep):
        raise ValueError(f'image {img_path} lies outside the cache\'s image root {image_root}')
    return rel.replace(os.sep, '/')
