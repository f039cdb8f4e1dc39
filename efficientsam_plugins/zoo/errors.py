"""The zoo's exceptions: one base class, so callers (and ``cli.run_tool``) catch them all at once."""


class ZooError(Exception):
    """Base class of every error the model zoo raises."""


class ManifestError(ZooError, ValueError):
    """A user manifest (``EFFICIENTSAM_ZOO_MANIFEST``) or a setting (mirror, download timeout) is invalid."""


class UnknownCheckpointError(ZooError, LookupError):
    """Neither a zoo name, an existing file, nor a URL."""


class DownloadError(ZooError):
    """No URL of an entry produced a verified file."""


class ChecksumError(DownloadError):
    """A file does not match the manifest's size or sha256."""


class OfflineError(DownloadError):
    """Offline mode is on and the checkpoint is not in the cache."""


class CacheError(ZooError):
    """The cache folder cannot be written (read-only, not a folder, no permission)."""
