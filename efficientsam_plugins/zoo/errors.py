"""The zoo's exceptions: one base class, so callers can catch every zoo failure at once."""


class ZooError(Exception):
    """Base class of every error the model zoo raises."""


class ManifestError(ZooError, ValueError):
    """A manifest (built-in, ``EFFICIENTSAM_ZOO_MANIFEST`` or the mirror setting) is invalid."""


class UnknownCheckpointError(ZooError, KeyError):
    """A name that is neither a zoo entry, an existing file, nor a URL."""

    def __str__(self):
        # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ''


class DownloadError(ZooError, RuntimeError):
    """No URL of an entry produced a verified file."""


class ChecksumError(DownloadError):
    """A downloaded or cached file does not match the manifest's size or sha256."""


class OfflineError(DownloadError):
    """Offline mode is on and the checkpoint is not in the cache."""
