"""Model zoo under faults: a fault-injecting HTTP server on 127.0.0.1 (a body that stalls midway, a
body without Content-Length cut short), a cached file overwritten in place with the same size, and a
read-only cache."""
import hashlib
import importlib
import io
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from efficientsam_plugins import zoo
from efficientsam_plugins.cli import run_tool
from efficientsam_plugins.zoo import cli


def checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({'model': {'weight': torch.arange(50_000, dtype=torch.float32)}}, buffer)
    return buffer.getvalue()


PAYLOAD = checkpoint_bytes()
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """``/good``: the payload; ``/stall``: a third of it, then silence until the test ends;
    ``/nolength`` and ``/nolength_cut``: no Content-Length, the body ended by closing the connection,
    whole or cut after two thirds (HTTP/1.0, as many plain file servers answer)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in ('/good', '/stall', '/nolength', '/nolength_cut'):
            return self.send_error(404)
        self.send_response(200)
        if not self.path.startswith('/nolength'):
            self.send_header('Content-Length', str(len(PAYLOAD)))
        self.end_headers()
        body = {'/stall': PAYLOAD[:len(PAYLOAD) // 3], '/nolength_cut': PAYLOAD[:2 * len(PAYLOAD) // 3]}
        self.wfile.write(body.get(self.path, PAYLOAD))
        self.wfile.flush()
        if self.path == '/stall':
            self.server.release.wait(30)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    httpd.requests, httpd.release = [], threading.Event()
    httpd.url = lambda path: f'http://127.0.0.1:{httpd.server_address[1]}{path}'
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(tmp_path / 'user.json'))
    for name in ('EFFICIENTSAM_OFFLINE', 'EFFICIENTSAM_ZOO_MIRROR', 'EFFICIENTSAM_DOWNLOAD_TIMEOUT'):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / 'user.json').write_text('[]')
    return tmp_path / 'cache'


def use(*urls, **fields):
    entry = dict(name='tiny', filename='tiny.pt', urls=list(urls), size=len(PAYLOAD), sha256=PAYLOAD_SHA256,
                 arch=dict(family='efficientsam', config='ti'), **fields)
    Path(os.environ['EFFICIENTSAM_ZOO_MANIFEST']).write_text(json.dumps([entry]))


def cached(home):
    return sorted(name for name in os.listdir(home) if not name.startswith('.')) if home.is_dir() else []


def test_stalled_body_times_out_then_the_next_url_serves(server, home, monkeypatch):
    monkeypatch.setenv('EFFICIENTSAM_DOWNLOAD_TIMEOUT', '0.5')
    use(server.url('/stall'), server.url('/good'))
    start = time.perf_counter()
    path = zoo.get_checkpoint('tiny', progress=False)
    assert time.perf_counter() - start < 5 and Path(path).read_bytes() == PAYLOAD
    assert server.requests == ['/stall', '/good']


def test_stalled_body_alone_fails_clearly_and_keeps_nothing(server, home):
    use(server.url('/stall'))
    start = time.perf_counter()
    with pytest.raises(zoo.DownloadError) as raised:
        zoo.get_checkpoint('tiny', progress=False, timeout=0.5)
    seconds = time.perf_counter() - start
    assert 0.5 <= seconds < 5, seconds
    assert f'the transfer stalled: no data for 0.5 s after {len(PAYLOAD) // 3} bytes' in str(raised.value)
    assert 'EFFICIENTSAM_DOWNLOAD_TIMEOUT' in str(raised.value) and cached(home) == []


def test_bad_timeout_setting_is_named(home, monkeypatch):
    monkeypatch.setenv('EFFICIENTSAM_DOWNLOAD_TIMEOUT', 'soon')
    use('http://127.0.0.1:9/never')
    with pytest.raises(zoo.ManifestError, match="EFFICIENTSAM_DOWNLOAD_TIMEOUT='soon': expected a number"):
        zoo.get_checkpoint('tiny', progress=False)


def test_body_without_length_is_kept_only_when_complete(server, home):
    cut = server.url('/nolength_cut')
    with pytest.raises(zoo.DownloadError, match='no Content-Length and the .*-byte body is not a complete checkpoint'):
        zoo.get_checkpoint(cut, progress=False)
    assert cached(home) == []
    with pytest.raises(zoo.DownloadError):  # not cached as if complete: asked for again, refused again
        zoo.get_checkpoint(cut, progress=False)
    assert server.requests == ['/nolength_cut', '/nolength_cut']
    path = zoo.get_checkpoint(server.url('/nolength'), progress=False)
    assert torch.load(path, weights_only=True)['model']['weight'].shape == (50_000,)
    assert zoo.get_checkpoint(server.url('/nolength'), offline=True) == path  # cached, complete


def overwrite_in_place(path: Path) -> None:
    """Same size, same inode: only the bytes (and the file's times) change, as a bad disk or a stray
    writer would leave it."""
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(path, 'r+b') as stream:
        stream.seek(len(PAYLOAD) // 2)
        stream.write(b'\0' * 4096)


def test_cached_file_overwritten_in_place_is_refused_offline_and_fetched_again(server, home, capsys):
    use(server.url('/good'))
    path = Path(zoo.get_checkpoint('tiny', progress=False))
    overwrite_in_place(path)
    assert path.stat().st_size == len(PAYLOAD)
    with pytest.raises(zoo.OfflineError, match=f'{path} is damaged: sha256 mismatch for tiny.pt'):
        zoo.get_checkpoint('tiny', offline=True)
    assert run_tool(cli.main, ['download', '--offline', 'tiny']) == 1
    assert 'is damaged: sha256 mismatch' in capsys.readouterr().err
    assert run_tool(cli.main, ['download', 'tiny']) == 0  # fetched again, verified
    out, err = capsys.readouterr()
    assert out.strip() == str(path) and 'is damaged (sha256 mismatch' in err and 'downloading it again' in err
    assert path.read_bytes() == PAYLOAD and server.requests == ['/good', '/good']


def test_url_file_overwritten_in_place_is_noticed(server, home):
    """A URL outside the zoo has no sha256 in a manifest: the one taken at download is compared."""
    path = Path(zoo.get_checkpoint(server.url('/good'), progress=False))
    overwrite_in_place(path)
    with pytest.raises(zoo.OfflineError, match='changed since it was verified'):
        zoo.get_checkpoint(server.url('/good'), offline=True)


def test_verified_file_is_not_hashed_again(server, home, monkeypatch):
    use(server.url('/good'))
    path = zoo.get_checkpoint('tiny', progress=False)
    hashed = []
    module = importlib.import_module('efficientsam_plugins.zoo.download')
    monkeypatch.setattr(module, 'sha256_file', lambda p: hashed.append(p) or hashlib.sha256(b'').hexdigest())
    assert zoo.get_checkpoint('tiny', offline=True) == path and hashed == []


@pytest.fixture
def read_only(home):
    """Makes ``home`` read-only for this process: chmod for a normal user; root ignores that, so for
    root the folder is made immutable (chattr +i), or the test is skipped where that is not allowed."""
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        home.chmod(0o555)
        yield home
        home.chmod(0o755)
        return
    if subprocess.run(['chattr', '+i', str(home)], capture_output=True).returncode != 0:
        pytest.skip('running as root where chattr +i is not allowed: no way to make a folder read-only')
    try:
        yield home
    finally:
        subprocess.run(['chattr', '-i', str(home)], check=True)


def test_read_only_cache_names_the_folder(server, read_only):
    use(server.url('/good'))
    with pytest.raises(zoo.CacheError) as raised:
        zoo.get_checkpoint('tiny', progress=False)
    message = str(raised.value)
    assert f'cannot write to the model cache {read_only}' in message and 'EFFICIENTSAM_HOME' in message
    assert 'network' not in message and server.requests == []


def test_read_only_cache_still_serves_its_verified_files(server, home, tmp_path):
    use(server.url('/good'))
    path = zoo.get_checkpoint('tiny', progress=False)
    subprocess.run(['chattr', '+i', str(home)], capture_output=True) if os.geteuid() == 0 else home.chmod(0o555)
    try:
        assert zoo.get_checkpoint('tiny', offline=True) == path
    finally:
        subprocess.run(['chattr', '-i', str(home)], capture_output=True) if os.geteuid() == 0 else home.chmod(0o755)
