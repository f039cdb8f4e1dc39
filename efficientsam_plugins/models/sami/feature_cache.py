"""On-disk store of teacher features: fp16 maps in sharded files with an index and checksums.

Layout of a cache directory::

    meta.json                       format, teacher description, image size, image root
    shards/<rank>-<run>-<n>.bin     raw fp16 maps, one after another
    shards/<rank>-<run>-<n>.json    index: per image key its offset, shape and crc32, plus the
                                    shard's size and sha256; written last, so its presence marks
                                    a complete shard

Every rank writes its own shards (names carry the rank and a per-run id), so several ranks and
resumed runs never write the same file. A shard being written is ``*.bin.partial``; shards
without an index are incomplete and never read. Every read checks the record's crc32, and
:meth:`TeacherFeatureCache.verify` re-hashes whole shards, so corrupt data raises
:class:`FeatureCacheError` instead of being used.
"""
import glob
import hashlib
import json
import os
import uuid
import zlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

FORMAT = 'efficientsam_plugins/teacher-feature-cache/v1'
META_FILE = 'meta.json'
SHARD_DIR = 'shards'
_RERUN = 'run tools/extract_teacher_features.py again: it resumes and recomputes missing shards'


class FeatureCacheError(RuntimeError):
    """A cache that is missing, corrupt, incomplete or made for another teacher."""


def _write_json_atomic(path: str, obj: Any) -> None:
    tmp = f'{path}.{uuid.uuid4().hex}.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_meta(root: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Creates ``meta.json`` once (race-free across ranks) or checks it matches ``meta``."""
    os.makedirs(os.path.join(root, SHARD_DIR), exist_ok=True)
    meta = json.loads(json.dumps(dict(meta, format=FORMAT), sort_keys=True))
    path = os.path.join(root, META_FILE)
    tmp = f'{path}.{uuid.uuid4().hex}.tmp'
    with open(tmp, 'w') as f:
        json.dump(meta, f, sort_keys=True, indent=1)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        existing = read_meta(root)
        if existing != meta:
            diff = sorted(k for k in set(existing) | set(meta) if existing.get(k) != meta.get(k))
            raise FeatureCacheError(
                f'the cache at {root} was made with different settings ({", ".join(diff)}): '
                f'cache {[existing.get(k) for k in diff]} vs now {[meta.get(k) for k in diff]}; '
                f'use another output directory') from None
    finally:
        os.remove(tmp)
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
        raise FeatureCacheError(f'{path} has format {meta.get("format")!r}, expected {FORMAT!r}')
    return meta


def incomplete_shards(root: str) -> List[str]:
    """Shard files left by interrupted writers: ``*.bin.partial`` and ``*.bin`` without index."""
    shard_dir = os.path.join(root, SHARD_DIR)
    partial = glob.glob(os.path.join(shard_dir, '*.bin.partial'))
    orphans = [p for p in glob.glob(os.path.join(shard_dir, '*.bin'))
               if not os.path.isfile(p[:-4] + '.json')]
    return sorted(partial + orphans)


def _load_index(index_path: str) -> Dict[str, Any]:
    try:
        with open(index_path) as f:
            index = json.load(f)
        records, nbytes, sha = index['records'], int(index['nbytes']), index['sha256']
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FeatureCacheError(f'shard index {index_path} is corrupt ({err}); delete it and its '
                                f'.bin, then {_RERUN}') from err
    bin_path = index_path[:-5] + '.bin'
    size = os.path.getsize(bin_path) if os.path.isfile(bin_path) else None
    if size != nbytes:
        state = 'missing' if size is None else f'{size} bytes, the index says {nbytes}'
        raise FeatureCacheError(f'shard {bin_path} is incomplete or corrupt ({state}); delete it '
                                f'and its .json, then {_RERUN}')
    return dict(records=records, nbytes=nbytes, sha256=sha, bin_path=bin_path)


class FeatureCacheWriter:
    """Appends fp16 maps to this rank's shards; a shard becomes visible when its index is written.

    Args:
        root: cache directory.
        meta: settings the cache is valid for (teacher, image size, ...); must equal those of an
            existing cache in ``root``.
        rank: this writer's rank (part of its shard names).
        records_per_shard: maps per shard (the unit of resumption).
    """

    def __init__(self, root: str, meta: Mapping[str, Any], rank: int = 0,
                 records_per_shard: int = 256) -> None:
        if records_per_shard < 1:
            raise ValueError(f'records_per_shard must be positive, got {records_per_shard}')
        self.root, self.rank, self.records_per_shard = root, rank, records_per_shard
        self.meta = ensure_meta(root, meta)
        self._run = uuid.uuid4().hex[:8]
        self._count = 0
        self._file = None
        self._records: List[Dict[str, Any]] = []
        self._hash = None
        self._offset = 0
        self._path = ''

    def _open_shard(self) -> None:
        name = f'r{self.rank:04d}-{self._run}-{self._count:05d}'
        self._count += 1
        self._path = os.path.join(self.root, SHARD_DIR, name)
        self._file = open(self._path + '.bin.partial', 'xb')
        self._records, self._hash, self._offset = [], hashlib.sha256(), 0

    def add(self, key: str, features: torch.Tensor, image_hw: Optional[Sequence[int]] = None) -> None:
        """Stores one image's map ``[C, h, w]`` (converted to fp16) under ``key``."""
        if features.ndim != 3:
            raise ValueError(f'expected one map [C, h, w] for {key!r}, got {tuple(features.shape)}')
        if self._file is None:
            self._open_shard()
        array = features.detach().to('cpu', torch.float16).contiguous().numpy()
        data = array.tobytes()
        self._file.write(data)
        self._hash.update(data)
        self._records.append(dict(key=key, offset=self._offset, nbytes=len(data),
                                  shape=list(array.shape), crc32=zlib.crc32(data),
                                  image_hw=list(image_hw) if image_hw is not None else None))
        self._offset += len(data)
        if len(self._records) >= self.records_per_shard:
            self.flush()

    def flush(self) -> None:
        """Completes the current shard: data synced, renamed, then its index written."""
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._path + '.bin.partial', self._path + '.bin')
        _write_json_atomic(self._path + '.json', dict(
            format=FORMAT, shard=os.path.basename(self._path) + '.bin', nbytes=self._offset,
            sha256=self._hash.hexdigest(), records=self._records))

    close = flush

    def __enter__(self) -> 'FeatureCacheWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
        elif self._file is not None:
            self._file.close()
            self._file = None


class TeacherFeatureCache:
    """Reads a cache written by :class:`FeatureCacheWriter` (safe in forked DataLoader workers)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.meta = read_meta(root)
        self.incomplete = incomplete_shards(root)
        self._shards: List[Dict[str, Any]] = []
        self._index: Dict[str, Tuple[int, int, int, Tuple[int, ...], int]] = {}
        for index_path in sorted(glob.glob(os.path.join(root, SHARD_DIR, '*.json'))):
            shard = _load_index(index_path)
            number = len(self._shards)
            self._shards.append(shard)
            for rec in shard['records']:
                self._index.setdefault(rec['key'], (number, int(rec['offset']), int(rec['nbytes']),
                                                    tuple(rec['shape']), int(rec['crc32'])))
        self._fds: Dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def keys(self) -> Iterable[str]:
        return self._index.keys()

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state['_fds'] = {}
        return state

    def _fd(self, number: int) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()
        if number not in self._fds:
            self._fds[number] = os.open(self._shards[number]['bin_path'], os.O_RDONLY)
        return self._fds[number]

    def get(self, key: str) -> torch.Tensor:
        """The fp16 map ``[C, h, w]`` stored under ``key``."""
        if key not in self._index:
            hint = (f'; {len(self.incomplete)} incomplete shard(s) show an interrupted extraction, '
                    f'{_RERUN}' if self.incomplete else '')
            raise KeyError(f'{key!r} is not in the teacher-feature cache {self.root} '
                           f'({len(self._index)} images){hint}')
        number, offset, nbytes, shape, crc = self._index[key]
        data = os.pread(self._fd(number), nbytes, offset)
        if len(data) != nbytes or zlib.crc32(data) != crc:
            raise FeatureCacheError(f'record {key!r} of shard {self._shards[number]["bin_path"]} '
                                    f'fails its checksum: the shard is corrupt; delete it and its '
                                    f'.json, then {_RERUN}')
        return torch.from_numpy(np.frombuffer(data, dtype=np.float16).copy()).view(shape)

    def verify(self) -> List[str]:
        """Re-hashes every shard; returns one line per problem (empty when all is well)."""
        problems = [f'incomplete shard file {p}' for p in self.incomplete]
        for shard in self._shards:
            digest = hashlib.sha256()
            with open(shard['bin_path'], 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 22), b''):
                    digest.update(chunk)
            if digest.hexdigest() != shard['sha256']:
                problems.append(f'{shard["bin_path"]}: sha256 mismatch (corrupt)')
        return problems

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        if getattr(self, '_pid', None) == os.getpid():
            self.close()


def image_key(img_path: str, image_root: str) -> str:
    """The cache key of an image: its path relative to ``image_root``, with ``/`` separators."""
    rel = os.path.relpath(os.path.abspath(img_path), os.path.abspath(image_root))
    if rel == '..' or rel.startswith('..' + os.sep):
        raise ValueError(f'image {img_path} lies outside the cache\'s image root {image_root}')
    return rel.replace(os.sep, '/')
