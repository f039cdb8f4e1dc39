"""Files written atomically: complete at their path, or absent (never a partial file); file hashes."""
import hashlib
import json
import os
import tempfile
from typing import Any, Callable, Optional


def check_output_path(path: str) -> str:
    """Fails before a long run when ``path`` could not be written at its end."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'output folder does not exist: {folder}')
    if os.path.isdir(path):
        raise IsADirectoryError(f'output path is a folder: {path}')
    if not os.access(folder, os.W_OK):
        raise PermissionError(f'output folder is not writable: {folder}')
    return path


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` for a temporary file beside ``path``, then renames it into place with
    the permissions a plain ``open`` would give; on any error nothing is left behind."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)  # the only way to read it
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj: Any, indent: Optional[int] = None) -> None:
    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(obj, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def sha256_file(path: str) -> str:
    """The hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()
