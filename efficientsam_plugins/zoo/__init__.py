"""Model zoo: verified checkpoints by name (importing it needs no torch; downloading does).

``get_checkpoint(name_or_url)`` returns the local path of a zoo name (``efficientsam_ti`` or
``zoo://efficientsam_ti``), an http(s)/file URL, or an existing file, downloading into the cache
when needed. ``get_entry(name).arch`` says what a checkpoint holds (``Arch('sam', 'vit_h')``);
``entry_for(family, config)`` finds the released weights of a config. Every error is a
:class:`ZooError`. Environment: ``EFFICIENTSAM_HOME`` (cache), ``EFFICIENTSAM_OFFLINE=1``,
``EFFICIENTSAM_ZOO_MANIFEST=user.json`` (more entries), ``EFFICIENTSAM_ZOO_MIRROR=https://host/dir``,
``EFFICIENTSAM_DOWNLOAD_TIMEOUT=30`` (seconds without data before a URL is given up).
"""
from .download import Verification, cache_dir, download, get_checkpoint, verify
from .errors import (
                     CacheError,
                     ChecksumError,
                     DownloadError,
                     ManifestError,
                     OfflineError,
                     UnknownCheckpointError,
                     ZooError,
)
from .manifest import Arch, Entry, entry_for, get_entry, list_entries

__all__ = [
    'get_checkpoint', 'list_entries', 'get_entry', 'entry_for', 'download', 'verify', 'cache_dir',
    'Arch', 'Entry', 'Verification', 'ZooError', 'ManifestError', 'UnknownCheckpointError',
    'DownloadError', 'ChecksumError', 'OfflineError', 'CacheError',
]
