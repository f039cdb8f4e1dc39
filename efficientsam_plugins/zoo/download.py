"""Getting checkpoints into the local cache, so that only verified files ever appear there, and
noticing when a cached file changes afterwards.

A transfer runs under a ``filelock`` lock, so concurrent processes (DDP ranks) fetch a file once.
Every read of the body has a stall timeout (``EFFICIENTSAM_DOWNLOAD_TIMEOUT`` seconds, default
:data:`DEFAULT_TIMEOUT`; ``timeout=``), after which the next URL is tried, then a clear error is
raised. The body goes to a temporary file beside the target and is checked (size, sha256; a body of
unknown size and hash must be a complete ``torch.save`` file) before ``os.replace`` moves it into
place; otherwise it is deleted (downloads are not resumed).

Verification leaves a stamp (``.verified/<file>.json``: size, modification and change times,
inode, sha256). A cached file whose stat no longer matches its stamp (overwritten in place, even
with the same size) is hashed again before use: if it no longer matches it is fetched again, or
refused offline. The stamp keeps the common path to one ``stat``.
"""
import glob
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

from filelock import FileLock, Timeout

from ..fileio import atomic_write_json, sha256_file
from .errors import CacheError, ChecksumError, DownloadError, ManifestError, OfflineError, UnknownCheckpointError
from .manifest import URL_SCHEMES, Entry, get_entry, list_entries

HOME_ENV = 'EFFICIENTSAM_HOME'
OFFLINE_ENV = 'EFFICIENTSAM_OFFLINE'
TIMEOUT_ENV = 'EFFICIENTSAM_DOWNLOAD_TIMEOUT'
DEFAULT_TIMEOUT = 30.0  # seconds without a byte before a transfer is given up
STAMPS = '.verified'  # beside .locks in the cache folder


def cache_dir() -> Path:
    """``$EFFICIENTSAM_HOME``, or ``~/.cache/efficientsam_plugins``."""
    return Path(os.environ.get(HOME_ENV) or '~/.cache/efficientsam_plugins').expanduser()


def stall_timeout(timeout: Optional[float] = None) -> float:
    """``timeout``, else ``$EFFICIENTSAM_DOWNLOAD_TIMEOUT``, else :data:`DEFAULT_TIMEOUT` (seconds)."""
    if timeout is None:
        text = os.environ.get(TIMEOUT_ENV, '').strip()
        try:
            timeout = float(text) if text else DEFAULT_TIMEOUT
        except ValueError:
            raise ManifestError(f'{TIMEOUT_ENV}={text!r}: expected a number of seconds') from None
    if not timeout > 0:
        raise ManifestError(f'the download stall timeout must be a positive number of seconds, got {timeout!r}')
    return float(timeout)


def get_checkpoint(name_or_url: Union[str, os.PathLike], offline: Optional[bool] = None,
                   progress: Optional[bool] = None, timeout: Optional[float] = None) -> str:
    """The local path of a zoo name (``NAME`` or ``zoo://NAME``), a URL (downloaded unless cached;
    ``offline``, default ``EFFICIENTSAM_OFFLINE``, forbids that), or an existing file. A cached file
    changed since it was verified is hashed again, and fetched again (refused offline) if it no
    longer matches. ``progress``: None draws the bar when stderr is a terminal; ``timeout``: see
    :func:`stall_timeout`."""
    ref = os.fspath(name_or_url)
    if '://' in ref and not ref.startswith('zoo://'):
        entry = _url_entry(ref)
    else:
        try:
            entry = get_entry(ref)
        except UnknownCheckpointError as err:
            if os.path.isfile(os.path.expanduser(ref)):
                return os.path.expanduser(ref)
            raise UnknownCheckpointError(f'{err}; nor is {ref!r} an existing file or a URL') from None
    target = cache_dir() / entry.filename
    problem = _cached_problem(target, entry) if target.is_file() else None
    if target.is_file() and problem is None:
        return str(target)
    if offline is None:
        offline = os.environ.get(OFFLINE_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')
    if offline:
        state = f'is damaged: {problem}' if problem else 'is missing'
        raise OfflineError(f'{entry.filename} ({entry.name}) is not in the cache ({target} {state}) '
                           f'and offline mode is on ({OFFLINE_ENV}=1 or offline=True); {_how_to_get(entry, target)}')
    if problem:
        print(f'{target} is damaged ({problem}); downloading it again', file=sys.stderr)
    return download(entry, progress, timeout)


def download(entry: Union[Entry, str], progress: Optional[bool] = None, timeout: Optional[float] = None) -> str:
    """Download ``entry`` (an Entry or a name) into the cache unless a verified copy is there."""
    entry = entry if isinstance(entry, Entry) else get_entry(entry)
    timeout = stall_timeout(timeout)
    target = cache_dir() / entry.filename
    try:
        (cache_dir() / '.locks').mkdir(parents=True, exist_ok=True)
        lock = FileLock(cache_dir() / '.locks' / f'{entry.filename}.lock')
        try:
            held = lock.acquire(timeout=0)
        except Timeout:  # another process (a DDP rank, say) is downloading it
            print(f'waiting for another process to download {entry.filename}', file=sys.stderr)
            held = lock.acquire()
    except OSError as err:
        raise CacheError(_unwritable(err, entry, target)) from None
    with held:
        if target.is_file() and _cached_problem(target, entry) is None:  # a peer's, or one verified now
            return str(target)
        for stale in target.parent.glob(glob.escape(target.name) + '.download*'):  # a killed run's
            stale.unlink()
        failures = []
        for url in entry.urls:
            try:
                _fetch(url, target, entry, sys.stderr.isatty() if progress is None else progress, timeout)
                return str(target)
            except DownloadError as err:
                failures.append(err)
    error = ChecksumError if any(isinstance(err, ChecksumError) for err in failures) else DownloadError
    raise error(f'could not download {entry.filename} ({entry.name}), every URL failed: '
                f'{"; ".join(map(str, failures))}; {_how_to_get(entry, target)}')


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: ``status`` is 'OK', 'MISSING' or 'CORRUPT'."""
    name: str
    path: Path
    status: str
    detail: str


def verify(entry: Union[Entry, str]) -> Verification:
    """Re-hash the cached file of ``entry`` (an Entry or a name) against the manifest (stamping it
    when it matches)."""
    entry = entry if isinstance(entry, Entry) else get_entry(entry)
    path = cache_dir() / entry.filename
    if not path.is_file():
        return Verification(entry.name, path, 'MISSING', 'not downloaded')
    digest = sha256_file(path)
    problem = _mismatch(path, entry, digest)
    if problem is None:
        _stamp(path, digest)
    return Verification(entry.name, path, 'CORRUPT' if problem else 'OK',
                        problem or ('sha256 matches' if entry.sha256 else 'no sha256 to check'))


def _fetch(url: str, target: Path, entry: Entry, progress: bool, timeout: float) -> None:
    """Download ``url`` beside ``target``, check it, and only then move it into place."""
    from tqdm import tqdm
    temp = target.with_name(target.name + '.download')
    try:
        out = open(temp, 'wb')
    except OSError as err:
        raise CacheError(_unwritable(err, entry, target)) from None
    digest, got, size, ok = hashlib.sha256(), 0, entry.size, False
    try:
        with out, urllib.request.urlopen(url, timeout=timeout) as reply:
            length = reply.headers.get('Content-Length') or ''
            size = size or (int(length) if length.isdigit() else None)  # outside the zoo, the server's word
            with tqdm(total=size, unit='B', unit_scale=True, unit_divisor=1024, desc=entry.filename,
                      disable=not progress) as bar:
                for block in iter(lambda: reply.read1(1 << 20), b''):  # what has come, so `got` is exact
                    out.write(block)
                    digest.update(block)
                    got += len(block)
                    bar.update(len(block))
        ok = True
    except urllib.error.HTTPError as err:
        raise DownloadError(f'{url}: HTTP {err.code} {err.reason}') from None
    except urllib.error.URLError as err:
        stalled = isinstance(err.reason, TimeoutError)
        raise DownloadError(f'{url}: cannot reach it: ' + (f'no answer within {timeout:g} s ({TIMEOUT_ENV})'
                                                           if stalled else str(err.reason))) from None
    except TimeoutError:
        raise DownloadError(f'{url}: the transfer stalled: no data for {timeout:g} s after {got} bytes '
                            f'(set {TIMEOUT_ENV} to wait longer); nothing was kept') from None
    except (OSError, http.client.HTTPException) as err:  # IncompleteRead of a chunked body, resets
        raise DownloadError(f'{url}: the transfer failed after {got} bytes: {err!r}; nothing was kept') from None
    finally:
        if not ok:
            temp.unlink(missing_ok=True)
    if size and got < size:  # urllib ends a cut-off body quietly, so the size tells
        temp.unlink()
        raise DownloadError(f'{url}: the connection dropped after {got} of {size} bytes; '
                            f'nothing was kept (downloads are not resumed)')
    problem = _mismatch(temp, replace(entry, size=size), digest.hexdigest())
    if problem:
        temp.unlink()
        raise ChecksumError(f'{url}: {problem}')
    if size is None and entry.sha256 is None and _incomplete_checkpoint(temp):
        # nothing else tells a body that ended cleanly from a dropped connection
        temp.unlink()
        raise DownloadError(f'{url}: the server sent no Content-Length and the {got}-byte body is not a '
                            f'complete checkpoint (the connection may have dropped); nothing was kept')
    os.replace(temp, target)
    _stamp(target, digest.hexdigest())


def _mismatch(path: Path, entry: Entry, digest: Optional[str] = None) -> Optional[str]:
    """Why ``path`` is not ``entry``'s file (size, then sha256: ``digest``, or hashed now), or None."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f'size mismatch for {entry.filename}: expected {entry.size} bytes, got {size}'
    if entry.sha256:
        digest = digest or sha256_file(path)
        if digest != entry.sha256:
            return f'sha256 mismatch for {entry.filename}: expected {entry.sha256}, got {digest}'
    return None


def _incomplete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is not a complete ``torch.save`` file (a truncated zip lacks its directory)."""
    from ..checkpoint import check_checkpoint_file
    try:
        check_checkpoint_file(str(path))
    except ValueError:
        return True
    return False


def _stat_key(path: Path) -> dict:
    info = path.stat()
    return dict(size=info.st_size, mtime_ns=info.st_mtime_ns, ctime_ns=info.st_ctime_ns, inode=info.st_ino)


def _stamp_path(path: Path) -> Path:
    return path.parent / STAMPS / f'{path.name}.json'


def _stamp(path: Path, digest: str) -> None:
    """Records that ``path``, as it is now, hashed to ``digest``; a read-only cache gets no stamp
    (its files are then hashed at every use)."""
    try:
        _stamp_path(path).parent.mkdir(exist_ok=True)
        atomic_write_json(str(_stamp_path(path)), dict(_stat_key(path), sha256=digest))
    except OSError:
        pass


def _cached_problem(path: Path, entry: Entry) -> Optional[str]:
    """None when the cached ``path`` is ``entry``'s file: its stamp matches its stat, or it hashes
    (again) to the manifest's sha256 (for a URL without one: to the stamp's, or without a stamp it
    is a complete checkpoint); else what is wrong."""
    try:
        with open(_stamp_path(path), encoding='utf-8') as stream:
            stamp = json.load(stream)
    except (OSError, ValueError):
        stamp = {}
    expected = entry.sha256 or stamp.get('sha256')
    if stamp and stamp.get('sha256') == expected and {k: stamp.get(k) for k in _stat_key(path)} == _stat_key(path):
        return None
    digest = sha256_file(path)
    problem = _mismatch(path, entry, digest)
    if problem is None and expected and digest != expected:  # a URL's file, changed since its stamp
        problem = f'{entry.filename} changed since it was verified: sha256 {digest}, verified as {expected}'
    if problem is None and not expected and _incomplete_checkpoint(path):  # never verified: must be whole
        problem = f'{entry.filename} is not a complete checkpoint (truncated, or another kind of file)'
    if problem is None:
        _stamp(path, digest)
    return problem


def _url_entry(url: str) -> Entry:
    """The zoo entry serving ``url``, else an entry for it alone, its cache name prefixed with
    the URL's hash so that two URLs ending in the same file name never share a file."""
    for entry in list_entries():
        if url in entry.urls:
            return entry
    if not url.startswith(URL_SCHEMES):
        raise DownloadError(f'unsupported URL {url!r}: use {", ".join(URL_SCHEMES)} or zoo://NAME')
    basename = os.path.basename(urllib.parse.urlsplit(url).path.rstrip('/')) or 'checkpoint'
    filename = f'{hashlib.sha256(url.encode()).hexdigest()[:12]}_{basename}'
    return Entry(url, filename, (url,), size=None, sha256=None, arch=None)


def _how_to_get(entry: Entry, target: Path) -> str:
    return (f'to get it, run `python tools/zoo.py download {entry.name}` where the network is '
            f'reachable (or set EFFICIENTSAM_ZOO_MIRROR), or copy {entry.urls[0]} to {target}')


def _unwritable(err: OSError, entry: Entry, target: Path) -> str:
    return (f'cannot write to the model cache {cache_dir()} ({err.strerror or err}: {err.filename or target}): '
            f'set {HOME_ENV} to a writable folder, or copy {entry.urls[0]} to {target} as a user who may write there')
