"""A dependency-free progress line."""
import sys
import time
from typing import TextIO


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
