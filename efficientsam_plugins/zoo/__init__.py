"""Model zoo: fetch verified checkpoints by name (standard library only; never imports torch).

Public API::

    get_checkpoint(name_or_url_or_path, offline=None, progress=None) -> str
        Local path of a zoo name ('efficientsam_ti', 'sam_vit_b', ...), a URL (http, https,
        file), or an existing file. Downloads into the cache when needed, verified by size and
        sha256 before the file becomes visible; safe to call from every DDP rank at once.
    list_entries() -> list[Entry]           every known checkpoint
    get_entry(name) -> Entry                one of them (UnknownCheckpointError lists the names)
    download(entry_or_name, progress=None) -> str
        (Re-)download into the cache; a cached file that verifies is kept.
    verify(entry_or_name) -> Verification   re-hash the cached file: status OK/MISSING/CORRUPT
    cache_dir() -> pathlib.Path             the cache directory

Every error is a :class:`ZooError`: ManifestError, UnknownCheckpointError, DownloadError and its
subclasses ChecksumError and OfflineError.

Environment:

* ``EFFICIENTSAM_HOME``: cache directory (default ``~/.cache/efficientsam_plugins``);
* ``EFFICIENTSAM_OFFLINE=1``: use only the cache (the error says how to get a missing file);
* ``EFFICIENTSAM_ZOO_MANIFEST=/path/user.json``: more entries, JSON with the fields name,
  filename, urls, size, sha256 (size and sha256 may be null), license, format, description;
* ``EFFICIENTSAM_ZOO_MIRROR=https://host/dir``: fetch every file from this directory instead.

Command line: ``python tools/zoo.py list | download NAME | verify [NAME...] | path NAME``.
"""
from .download import Verification, cache_dir, download, get_checkpoint, verify
from .errors import (ChecksumError, DownloadError, ManifestError, OfflineError,
                     UnknownCheckpointError, ZooError)
from .manifest import Entry, get_entry, list_entries

__all__ = [
    'get_checkpoint', 'list_entries', 'get_entry', 'download', 'verify', 'cache_dir', 'Entry',
    'Verification', 'ZooError', 'ManifestError', 'UnknownCheckpointError', 'DownloadError',
    'ChecksumError', 'OfflineError',
]
