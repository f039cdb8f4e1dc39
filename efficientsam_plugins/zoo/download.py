"""Getting checkpoints into the local cache, so that only verified files ever appear there.

``torch.hub.download_url_to_file`` does the transfer (and the tqdm bar) under a ``filelock`` lock,
so concurrent processes (DDP ranks) fetch a file once. Its output is checked for size and sha256
before ``os.replace`` moves it into place; otherwise it is deleted (downloads are not resumed).
"""
import glob
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

from filelock import FileLock, Timeout

from ..fileio import sha256_file
from .errors import ChecksumError, DownloadError, OfflineError, UnknownCheckpointError
from .manifest import URL_SCHEMES, Entry, get_entry, list_entries

HOME_ENV = 'EFFICIENTSAM_HOME'
OFFLINE_ENV = 'EFFICIENTSAM_OFFLINE'


def cache_dir() -> Path:
    """``$EFFICIENTSAM_HOME``, or ``~/.cache/efficientsam_plugins``."""
    return Path(os.environ.get(HOME_ENV) or '~/.cache/efficientsam_plugins').expanduser()


def get_checkpoint(name_or_url: Union[str, os.PathLike], offline: Optional[bool] = None,
                   progress: Optional[bool] = None) -> str:
    """The local path of a zoo name (``NAME`` or ``zoo://NAME``), a URL (downloaded unless cached;
    ``offline``, default ``EFFICIENTSAM_OFFLINE``, forbids that), or an existing file. A cached file
    was verified before it appeared, so only its size is re-checked. ``progress``: None draws the
    bar when stderr is a terminal."""
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
    if target.is_file() and entry.size in (None, target.stat().st_size):
        return str(target)
    if offline is None:
        offline = os.environ.get(OFFLINE_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')
    if offline:
        state = 'has the wrong size' if target.is_file() else 'is missing'
        raise OfflineError(f'{entry.filename} ({entry.name}) is not in the cache ({target} {state}) '
                           f'and offline mode is on ({OFFLINE_ENV}=1 or offline=True); {_how_to_get(entry, target)}')
    return download(entry, progress)


def download(entry: Union[Entry, str], progress: Optional[bool] = None) -> str:
    """Download ``entry`` (an Entry or a name) into the cache unless a verified copy is there."""
    entry = entry if isinstance(entry, Entry) else get_entry(entry)
    target = cache_dir() / entry.filename
    rehash = target.is_file()  # one written while we wait was verified by its writer
    (cache_dir() / '.locks').mkdir(parents=True, exist_ok=True)
    lock = FileLock(cache_dir() / '.locks' / f'{entry.filename}.lock')
    try:
        held = lock.acquire(timeout=0)
    except Timeout:  # another process (a DDP rank, say) is downloading it
        print(f'waiting for another process to download {entry.filename}', file=sys.stderr)
        held = lock.acquire()
    with held:
        if target.is_file() and _mismatch(target, entry, rehash) is None:
            return str(target)
        for stale in target.parent.glob(glob.escape(target.name) + '.download*'):  # a killed run's
            stale.unlink()
        failures = []
        for url in entry.urls:
            try:
                _fetch(url, target, entry, sys.stderr.isatty() if progress is None else progress)
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
    """Re-hash the cached file of ``entry`` (an Entry or a name) against the manifest."""
    entry = entry if isinstance(entry, Entry) else get_entry(entry)
    path = cache_dir() / entry.filename
    if not path.is_file():
        return Verification(entry.name, path, 'MISSING', 'not downloaded')
    problem = _mismatch(path, entry)
    return Verification(entry.name, path, 'CORRUPT' if problem else 'OK',
                        problem or ('sha256 matches' if entry.sha256 else 'no sha256 to check'))


def _fetch(url: str, target: Path, entry: Entry, progress: bool) -> None:
    """Download ``url`` beside ``target``, check it, and only then move it into place."""
    from torch.hub import download_url_to_file  # here, so listing and verifying need no torch
    temp = target.with_name(target.name + '.download')
    size = entry.size
    if size is None:  # outside the zoo, Content-Length is the only way to see a cut-off body
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method='HEAD'), timeout=60) as reply:
                length = reply.headers.get('Content-Length') or ''
            size = int(length) if length.isdigit() else None
        except (OSError, http.client.HTTPException):
            pass  # the download itself will report what is wrong
    try:
        download_url_to_file(url, str(temp), progress=progress)
    except urllib.error.HTTPError as err:
        raise DownloadError(f'{url}: HTTP {err.code} {err.reason}') from None
    except urllib.error.URLError as err:
        raise DownloadError(f'{url}: cannot reach it: {err.reason}') from None
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f'{url}: the transfer failed: {err!r}') from None
    got = temp.stat().st_size
    problem = _mismatch(temp, replace(entry, size=size))
    if problem:
        temp.unlink()
        if size and got < size:  # urllib ends a cut-off body quietly, so the size tells
            raise DownloadError(f'{url}: the connection dropped after {got} of {size} bytes; '
                                f'nothing was kept (downloads are not resumed)')
        raise ChecksumError(f'{url}: {problem}')
    os.replace(temp, target)


def _mismatch(path: Path, entry: Entry, rehash: bool = True) -> Optional[str]:
    """Why ``path`` is not ``entry``'s file (size, then sha256 if ``rehash``), or None."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f'size mismatch for {entry.filename}: expected {entry.size} bytes, got {size}'
    digest = sha256_file(path) if rehash and entry.sha256 else entry.sha256
    if digest != entry.sha256:
        return f'sha256 mismatch for {entry.filename}: expected {entry.sha256}, got {digest}'
    return None


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
