"""Output files written atomically (complete or absent) and a dependency-free progress line."""
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable, Optional, TextIO


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj: Any, indent: Optional[int] = None) -> None:
    """Writes JSON atomically (see :func:`atomic_write`)."""
    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(obj, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


class Progress:
    """``[done/total] unit, rate, ETA`` on one line of stderr (refreshed in place on a terminal)."""

    def __init__(self, total: int, unit: str = 'images', enabled: bool = True,
                 stream: TextIO = sys.stderr, min_interval_s: float = 1.0) -> None:
        self.total, self.unit, self.enabled, self.stream = total, unit, enabled, stream
        self.min_interval_s = min_interval_s
        self.done, self.start, self._last = 0, time.perf_counter(), 0.0
        self._tty = hasattr(stream, 'isatty') and stream.isatty()

    def update(self, n: int = 1, note: str = '') -> None:
        self.done += n
        now = time.perf_counter()
        if not self.enabled or (now - self._last < self.min_interval_s and self.done < self.total):
            return
        self._last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        line = (f'[{self.done}/{self.total}] {self.unit} {rate:.2f}/s, elapsed {elapsed:.0f}s, '
                f'ETA {eta:.0f}s {note}'.rstrip())
        end = '\n' if not self._tty or self.done >= self.total else ''
        self.stream.write(('\r' if self._tty else '') + line + end)
        self.stream.flush()
