"""Fetching zoo checkpoints into a local cache, so that only verified files ever appear there.

How a download works, and why:

* it holds an ``flock`` on ``<file>.lock`` for the whole download, so concurrent processes (DDP
  ranks, say) never write the same file twice: the others wait, then find the verified file;
* bytes go to ``<file>.part``; a connection that drops is resumed with an HTTP ``Range`` request
  (also by a later call), and a server that ignores ``Range`` (200, not 206) restarts it cleanly;
* size and sha256 are checked before an atomic ``os.replace`` makes the file visible; on a
  mismatch the partial file is deleted and nothing is left in the cache;
* each URL of the entry is tried in order, and the final error lists every failure.

A cached file was verified before it appeared, so a cache hit only re-checks its size; ``verify``
(and ``tools/zoo.py verify``) re-hashes it.
"""
import contextlib
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import dataclasses
from pathlib import Path
from typing import Optional, Union

from .errors import ChecksumError, DownloadError, OfflineError, UnknownCheckpointError
from .manifest import URL_SCHEMES, Entry, get_entry, list_entries

try:
    import fcntl
except ImportError:  # Windows has no flock: concurrent downloads there are not serialised.
    fcntl = None

HOME_ENV = 'EFFICIENTSAM_HOME'
OFFLINE_ENV = 'EFFICIENTSAM_OFFLINE'
DEFAULT_HOME = '~/.cache/efficientsam_plugins'

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
_MAX_TRIES_PER_URL = 5
_USER_AGENT = 'efficientsam_plugins-zoo'

EntryRef = Union[Entry, str]


def cache_dir() -> Path:
    """Where checkpoints are cached: ``$EFFICIENTSAM_HOME`` or ``~/.cache/efficientsam_plugins``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def is_offline(offline: Optional[bool] = None) -> bool:
    """``offline`` if given, else whether ``EFFICIENTSAM_OFFLINE`` is set to a true value."""
    if offline is not None:
        return bool(offline)
    return os.environ.get(OFFLINE_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')


@dataclasses.dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: ``status`` is 'OK', 'MISSING' or 'CORRUPT'."""
    name: str
    path: Path
    status: str
    detail: str = ''

    @property
    def ok(self) -> bool:
        return self.status == 'OK'


def verify(entry: EntryRef) -> Verification:
    """Re-hash the cached file of ``entry`` (an Entry or a zoo name) against its manifest."""
    entry = _as_entry(entry)
    path = cache_dir() / entry.filename
    if not path.is_file():
        return Verification(entry.name, path, 'MISSING', 'not downloaded')
    problem = _mismatch(path, entry)
    if problem:
        return Verification(entry.name, path, 'CORRUPT', problem)
    if entry.sha256:
        checked = 'sha256 matches'
    elif entry.size:
        checked = 'size matches; the manifest has no sha256 to check'
    else:
        checked = 'unchecked; the manifest has neither size nor sha256'
    return Verification(entry.name, path, 'OK', checked)


def get_checkpoint(name_or_url_or_path: Union[str, os.PathLike], offline: Optional[bool] = None,
                   progress: Optional[bool] = None) -> str:
    """The local path of a checkpoint given as a zoo name, a URL, or an existing file.

    Zoo names and URLs are downloaded into the cache unless already there. ``offline`` (default:
    ``EFFICIENTSAM_OFFLINE``) forbids the network. ``progress`` draws a bar on stderr: None draws
    it only when stderr is a terminal, True always, False never.
    """
    ref = os.fspath(name_or_url_or_path)
    if '://' in ref:
        entry = _entry_for_url(ref)
    else:
        try:
            entry = get_entry(ref)
        except KeyError as err:
            if os.path.isfile(os.path.expanduser(ref)):
                return os.path.expanduser(ref)
            raise UnknownCheckpointError(
                f'{err}; nor is {ref!r} an existing file or a URL') from None
    target = cache_dir() / entry.filename
    if target.is_file():
        if entry.size is None or target.stat().st_size == entry.size:
            return str(target)
        if is_offline(offline):
            raise ChecksumError(f'cached {target} is corrupt ({target.stat().st_size} bytes, '
                                f'expected {entry.size}) and offline mode is on; '
                                f'{_how_to_get(entry, target)}')
    elif is_offline(offline):
        raise OfflineError(f'{entry.filename} ({entry.name}) is not in the cache: {target} is '
                           f'missing and offline mode is on ({OFFLINE_ENV}=1 or offline=True); '
                           f'{_how_to_get(entry, target)}')
    return download(entry, progress=progress)


def download(entry: EntryRef, progress: Optional[bool] = None) -> str:
    """Download ``entry`` (an Entry or a zoo name) into the cache, verified; return its path.

    A cached file is re-hashed first and kept if it verifies, replaced if it does not. A file
    that another process finished while this one waited for the lock is only size-checked: it was
    verified before it appeared, and re-hashing it on every waiting DDP rank would cost minutes.
    """
    entry = _as_entry(entry)
    target = cache_dir() / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    cached_before = target.is_file()
    bar = _ProgressBar(entry.filename, _stderr_is_terminal() if progress is None else progress)
    lock = target.with_name(target.name + '.lock')
    with _exclusive_lock(lock, on_wait=lambda: bar.note(f'waiting for another process to '
                                                        f'download {entry.filename}')):
        if target.is_file():
            if cached_before:
                problem = _mismatch(target, entry)
            else:
                problem = _mismatch(target, dataclasses.replace(entry, sha256=None))
            if problem is None:
                return str(target)
            bar.note(f'replacing corrupt cached file {target}: {problem}')
        part = target.with_name(target.name + '.part')
        failures, checksum_failed = [], False
        try:
            for url in entry.urls:
                bar.note(f'downloading {url} to {target}')
                try:
                    _fetch_with_resume(url, part, entry, bar)
                except _UrlFailed as failure:
                    failures.append(f'{url}: {failure}')
                    continue
                problem = _mismatch(part, entry)
                if problem is None:
                    os.replace(part, target)
                    return str(target)
                part.unlink()
                failures.append(f'{url}: {problem}')
                checksum_failed = True
        finally:
            bar.close()
            if part.is_file() and part.stat().st_size == 0:
                part.unlink()
    error = ChecksumError if checksum_failed else DownloadError
    listed = ''.join(f'\n  - {failure}' for failure in failures)
    raise error(f'could not download {entry.filename} ({entry.name}); every URL failed:{listed}'
                f'\n{_how_to_get(entry, target)}')


def _stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _as_entry(entry: EntryRef) -> Entry:
    return entry if isinstance(entry, Entry) else get_entry(entry)


def _entry_for_url(url: str) -> Entry:
    """The zoo entry serving ``url``, else an unverified ad-hoc entry named by the URL itself.

    Ad-hoc files get a prefix from the URL's hash, so two URLs ending in the same file name (or
    one that shares a zoo file's name) never share a cache file.
    """
    for entry in list_entries():
        if url in entry.urls:
            return entry
    if not url.startswith(URL_SCHEMES):
        raise DownloadError(f'unsupported URL {url!r}: use one of {", ".join(URL_SCHEMES)}')
    basename = url.split('?', 1)[0].split('#', 1)[0].rstrip('/').rsplit('/', 1)[-1]
    safe = ''.join(c if c.isalnum() or c in '_.+-' else '_' for c in basename).lstrip('.')
    digest = hashlib.sha256(url.encode('utf-8')).hexdigest()[:12]
    filename = f'{digest}_{safe or "checkpoint"}'
    return Entry(name=url, filename=filename, urls=(url,), size=None, sha256=None,
                 license='unknown', format='unknown', description=f'ad-hoc download of {url}')


def _how_to_get(entry: Entry, target: Path) -> str:
    return (f'to get it, run `python tools/zoo.py download {entry.name}` where the network is '
            f'reachable (set EFFICIENTSAM_ZOO_MIRROR for a mirror), or copy the file from '
            f'{entry.urls[0]} to {target}')


def _mismatch(path: Path, entry: Entry) -> Optional[str]:
    """Why ``path`` is not ``entry``'s file (size, then sha256), or None if it matches."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f'size mismatch for {entry.filename}: expected {entry.size} bytes, got {size}'
    if entry.sha256 is not None:
        actual = _sha256(path)
        if actual != entry.sha256:
            return (f'sha256 mismatch for {entry.filename}: expected {entry.sha256}, '
                    f'got {actual}')
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(_CHUNK_BYTES), b''):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path, on_wait=None):
    """Hold an flock on ``lock_path``; the holder deletes the file on release.

    Deleting keeps the cache clean; a waiter that then wakes up holding the lock of a deleted file
    sees that the path no longer names its file and locks the current one instead. The kernel
    drops the lock of a process that dies, so a crash never leaves a stale lock.
    """
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                    break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(lock_path)
        os.close(fd)


class _UrlFailed(Exception):
    """This URL cannot deliver the file; the message says why (without the URL)."""


class _Interrupted(Exception):
    """A transfer stopped early; worth retrying if it made progress."""

    def __init__(self, message: str, progressed: bool):
        super().__init__(message)
        self.progressed = progressed


def _fetch_with_resume(url: str, part: Path, entry: Entry, bar: '_ProgressBar') -> None:
    """Complete ``part`` from ``url``, resuming while each try gets further than the last."""
    last_interruption = None
    for _ in range(_MAX_TRIES_PER_URL):
        have = part.stat().st_size if part.is_file() else 0
        if entry.size is not None and have > entry.size:
            part.unlink()
            have = 0
        if entry.size is not None and have == entry.size:
            return
        try:
            _fetch_once(url, part, have, entry, bar)
        except _Interrupted as interruption:
            if not interruption.progressed:
                raise _UrlFailed(str(interruption)) from None
            last_interruption = interruption
            continue
        now = part.stat().st_size if part.is_file() else 0
        if entry.size is None or now >= entry.size:
            return
        if now <= have:
            raise _UrlFailed(f'the server sent {now} of {entry.size} bytes and nothing more')
        last_interruption = _Interrupted(f'the server ended the file after {now} of '
                                         f'{entry.size} bytes', progressed=True)
    raise _UrlFailed(f'gave up after {_MAX_TRIES_PER_URL} interrupted tries; last: '
                     f'{last_interruption}')


def _fetch_once(url: str, part: Path, offset: int, entry: Entry, bar: '_ProgressBar') -> None:
    """One request: append from ``offset`` on a 206, rewrite ``part`` from scratch otherwise."""
    request = urllib.request.Request(url, headers={'User-Agent': _USER_AGENT})
    if offset:
        request.add_header('Range', f'bytes={offset}-')
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            part.unlink()
            raise _Interrupted('the server refused to resume (HTTP 416); restarting',
                               progressed=True) from None
        raise _UrlFailed(f'HTTP {err.code} {err.reason}') from None
    except urllib.error.URLError as err:
        if url.startswith('file://'):
            raise _UrlFailed(f'cannot read it: {err.reason}') from None
        raise _UrlFailed(f'cannot reach it (no network?): {err.reason}') from None
    except (http.client.HTTPException, OSError) as err:
        raise _UrlFailed(f'connection failed: {err!r}') from None
    with response:
        total = entry.size
        if offset and response.status == 206:
            start, full_size = _parse_content_range(response.headers.get('Content-Range'))
            if start != offset:
                part.unlink()
                raise _Interrupted(f'the server resumed at byte {start}, not {offset}; '
                                   f'restarting', progressed=True)
            total = total or full_size
            mode = 'ab'
        else:
            offset, mode = 0, 'wb'  # a 200 (or file://) answer is the whole file.
        length = response.headers.get('Content-Length')
        end = offset + int(length) if length and length.isdigit() else None
        total = total or end
        received = 0
        bar.start(offset)
        with open(part, mode) as out:
            while True:
                try:
                    chunk = response.read(_CHUNK_BYTES)
                except (http.client.HTTPException, OSError) as err:
                    raise _Interrupted(f'connection lost after {offset + received} bytes: '
                                       f'{err!r}', progressed=received > 0) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(offset + received, total)
    if end is not None and offset + received < end:
        raise _Interrupted(f'connection closed after {offset + received} of {end} bytes',
                           progressed=received > 0)


def _parse_content_range(header: Optional[str]):
    """(first byte, full size or None) of a ``Content-Range: bytes a-b/n`` header."""
    try:
        _, spec = header.split(' ', 1)
        first_last, full = spec.split('/', 1)
        return int(first_last.split('-', 1)[0]), (int(full) if full.isdigit() else None)
    except (AttributeError, ValueError):
        return None, None


class _ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second to keep logs small."""

    def __init__(self, label: str, enabled: bool, width: int = 30):
        self.label, self.enabled, self.width = label, enabled, width
        self.started = time.monotonic()
        self.resumed_at = None  # bytes already on disk before this download; not in the rate
        self.last_draw = 0.0
        self.drawn = False

    def start(self, offset: int) -> None:
        if self.resumed_at is None:
            self.resumed_at, self.started = offset, time.monotonic()

    def note(self, message: str) -> None:
        if self.enabled:
            self._end_line()
            print(message, file=sys.stderr, flush=True)

    def update(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not self.enabled or (now - self.last_draw < 0.1 and not finished):
            return
        self.last_draw = now
        rate = (done - (self.resumed_at or 0)) / max(now - self.started, 1e-6) / 1e6
        if total:
            filled = min(self.width, self.width * done // total)
            line = (f'{self.label}: {100 * done / total:5.1f}% '
                    f'[{"#" * filled}{"." * (self.width - filled)}] '
                    f'{done / 1e6:.1f}/{total / 1e6:.1f} MB {rate:.1f} MB/s')
        else:
            line = f'{self.label}: {done / 1e6:.1f} MB {rate:.1f} MB/s'
        sys.stderr.write('\r' + line)
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.enabled:
            self._end_line()

    def _end_line(self) -> None:
        if self.drawn:
            sys.stderr.write('\n')
            sys.stderr.flush()
            self.drawn = False
