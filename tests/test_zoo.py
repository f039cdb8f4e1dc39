"""Model zoo: real downloads from a local HTTP server (127.0.0.1 only) of a small payload."""
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import PIPE

import pytest

from efficientsam_plugins import zoo
from efficientsam_plugins.cli import run_tool
from efficientsam_plugins.zoo import cli

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; paths in ``server.drop`` close a third into the body, ``slow`` trickle."""

    def do_GET(self):
        self.server.requests.append((self.command, self.path))
        data = self.server.files.get(self.path)
        if data is None:
            return self.send_error(404)
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        sent = data[:len(data) // 3] if self.path in self.server.drop else data
        for start in range(0, len(sent) if self.command == 'GET' else 0, 16384):
            self.wfile.write(sent[start:start + 16384])
            time.sleep(0.05 if self.path in self.server.slow else 0)
        self.close_connection = True

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.drop, httpd.slow, httpd.requests = {'/w/tiny.pt': PAYLOAD}, set(), set(), []
    httpd.url = lambda path='/w/tiny.pt': f'http://127.0.0.1:{httpd.server_address[1]}{path}'
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(server, tmp_path, monkeypatch):
    """A fresh cache, no offline or mirror settings, and a user manifest with ``tiny`` served."""
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(tmp_path / 'user.json'))
    monkeypatch.delenv('EFFICIENTSAM_OFFLINE', raising=False)
    monkeypatch.delenv('EFFICIENTSAM_ZOO_MIRROR', raising=False)
    use(entry(urls=[server.url()]))
    return tmp_path / 'cache'


def entry(name='tiny', urls=('https://example.invalid/tiny.pt',), **fields):
    return dict(name=name, filename=f'{name}.pt', urls=list(urls), size=len(PAYLOAD),
                sha256=PAYLOAD_SHA256, arch=dict(family='efficientsam', config='ti'), **fields)


def use(*entries):
    Path(os.environ['EFFICIENTSAM_ZOO_MANIFEST']).write_text(json.dumps({'entries': list(entries)}))


def cached(home):
    """What the cache holds beside its hidden lock and stamp folders."""
    return sorted(name for name in os.listdir(home) if not name.startswith('.')) if home.is_dir() else []


def test_download_is_verified_cached_and_used_offline(server, home, monkeypatch):
    monkeypatch.setenv('EFFICIENTSAM_OFFLINE', '1')
    with pytest.raises(zoo.OfflineError) as raised:
        zoo.get_checkpoint('tiny')
    for part in ('not in the cache', str(home / 'tiny.pt'), 'tools/zoo.py download tiny', server.url()):
        assert part in str(raised.value)
    assert server.requests == []
    path = zoo.get_checkpoint('zoo://tiny', offline=False, progress=False)
    assert path == str(home / 'tiny.pt') and Path(path).read_bytes() == PAYLOAD
    assert cached(home) == ['tiny.pt'] and zoo.verify('tiny').status == 'OK'  # no temporary file left
    assert zoo.get_checkpoint('tiny') == path and server.requests == [('GET', '/w/tiny.pt')]  # offline


@pytest.mark.parametrize('extra, manifest, expected', [
    (b'', dict(sha256='0' * 64), f'sha256 mismatch for tiny.pt: expected {"0" * 64}, got {PAYLOAD_SHA256}'),
    (b'extra', {}, f'size mismatch for tiny.pt: expected {len(PAYLOAD)} bytes, got {len(PAYLOAD) + 5}'),
], ids=['sha256', 'size'])
def test_mismatch_leaves_nothing_and_says_what_differs(server, home, extra, manifest, expected):
    server.files['/w/tiny.pt'] = PAYLOAD + extra
    use({**entry(urls=[server.url()]), **manifest})
    with pytest.raises(zoo.ChecksumError, match=expected):
        zoo.get_checkpoint('tiny', progress=False)
    assert cached(home) == []


def test_dropped_connection_leaves_nothing_and_says_so(server, home):
    server.files['/w/ad_hoc.pt'] = PAYLOAD
    server.drop.update(server.files)
    dropped = f'the connection dropped after {len(PAYLOAD) // 3} of {len(PAYLOAD)} bytes'
    for ref in ('tiny', server.url('/w/ad_hoc.pt')):  # size from the manifest, for a bare URL from HEAD
        with pytest.raises(zoo.DownloadError, match=dropped):
            zoo.get_checkpoint(ref, progress=False)
        assert cached(home) == []
    server.drop.clear()
    assert Path(zoo.get_checkpoint('tiny', progress=False)).read_bytes() == PAYLOAD


def test_two_processes_download_once(server, home):
    server.slow.add('/w/tiny.pt')  # about a second: the second process starts long before the end
    fetch = 'from efficientsam_plugins import zoo; print(zoo.get_checkpoint("tiny", progress=False))'
    children = [subprocess.Popen([sys.executable, '-c', fetch], stdout=PIPE, stderr=PIPE, text=True)
                for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [out for out, _ in outputs] == [f'{home / "tiny.pt"}\n'] * 2, outputs
    assert server.requests == [('GET', '/w/tiny.pt')]
    assert any('waiting for another process to download tiny.pt' in err for _, err in outputs)
    assert zoo.verify('tiny').status == 'OK' and cached(home) == ['tiny.pt']


def test_mirror_serves_every_file_from_one_directory(server, home, monkeypatch):
    server.files['/mirror/tiny.pt'] = PAYLOAD
    use(entry(urls=[server.url('/original/tiny.pt'), 'https://example.invalid/other/tiny.pt']))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MIRROR', server.url('/mirror/'))
    assert zoo.get_entry('tiny').urls == (server.url('/mirror/tiny.pt'),)
    assert zoo.get_entry('sam_vit_b').urls == (server.url('/mirror/sam_vit_b_01ec64.pth'),)
    assert Path(zoo.get_checkpoint('tiny', progress=False)).read_bytes() == PAYLOAD
    assert server.requests == [('GET', '/mirror/tiny.pt')]
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MIRROR', '/some/dir')
    with pytest.raises(zoo.ManifestError, match='EFFICIENTSAM_ZOO_MIRROR'):
        zoo.list_entries()


def test_entries_carry_their_architecture(home):
    use(entry(), dict(name='sam_vit_b', filename='b.pth', urls=['https://intranet.example/b.pth'],
                      arch={'family': 'sam'}))  # an arch without config
    assert [item.name for item in zoo.list_entries()] == [
        'efficientsam_ti', 'efficientsam_s', 'sam_vit_h', 'sam_vit_l', 'sam_vit_b', 'mobile_sam', 'tiny']
    assert zoo.get_entry('sam_vit_h').arch == zoo.Arch('sam', 'vit_h')
    assert zoo.get_entry('sam_vit_b').arch == zoo.Arch('sam')
    assert zoo.get_entry('tiny').arch == zoo.Arch('efficientsam', 'ti')
    assert zoo.entry_for('efficientsam', 's').name == 'efficientsam_s'
    assert zoo.entry_for('efficientsam', 'ti').name == 'efficientsam_ti'  # built-in entries first


@pytest.mark.parametrize('field, value, expected', [
    ('sha256', 'abc', '64 hex digits'), ('size', -3, 'positive number'), ('filename', '../up.pt', 'plain'),
    ('urls', ['ftp://host/tiny.pt'], 'http://, https://, file://'), ('sha265', '0' * 64, 'one of the fields'),
    ('arch', {'config': 'ti'}, '"family"'), ('format', 'sam', 'one of the fields'),
])
def test_invalid_user_manifest_names_file_entry_and_field(home, field, value, expected):
    use({**entry(), field: value})
    with pytest.raises(zoo.ManifestError) as raised:
        zoo.get_entry('tiny')
    for part in (os.environ['EFFICIENTSAM_ZOO_MANIFEST'], "#0 ('tiny')", f'field {field!r}', expected):
        assert part in str(raised.value)
    Path(os.environ['EFFICIENTSAM_ZOO_MANIFEST']).write_text('{"entries": [')
    with pytest.raises(zoo.ManifestError, match='cannot read it'):
        zoo.list_entries()


def test_urls_paths_and_unknown_names(server, home, tmp_path):
    (tmp_path / 'tiny.pt').write_bytes(PAYLOAD)
    missing, refused = server.url('/w/missing.pt'), 'http://127.0.0.1:9/tiny.pt'
    use(entry(urls=[missing, refused, (tmp_path / 'tiny.pt').as_uri()]))
    assert zoo.get_checkpoint('tiny', progress=False) == str(home / 'tiny.pt')  # from the third URL
    assert zoo.get_checkpoint((tmp_path / 'tiny.pt').as_uri()) == str(home / 'tiny.pt')  # the entry's
    ad_hoc = zoo.get_checkpoint(server.url(), progress=False)
    assert ad_hoc.endswith('_tiny.pt') and Path(ad_hoc).read_bytes() == PAYLOAD
    assert zoo.get_checkpoint(tmp_path / 'tiny.pt') == str(tmp_path / 'tiny.pt')
    use(entry('gone', urls=[missing, refused]))
    with pytest.raises(zoo.DownloadError, match=f'{missing}: HTTP 404 .*{refused}: cannot reach it'):
        zoo.get_checkpoint('gone', progress=False)
    with pytest.raises(zoo.UnknownCheckpointError, match='knows: efficientsam_ti.*nor is .* an existing file'):
        zoo.get_checkpoint('no_such_model')
    with pytest.raises(zoo.DownloadError, match='unsupported URL'):
        zoo.get_checkpoint('s3://bucket/model.pt')


def test_cli_list_download_verify_path(home, capsys):
    def tool(*argv):
        status = run_tool(cli.main, list(argv))
        return (status, *capsys.readouterr())

    assert 'sam/vit_h' in tool('list')[1] and 'efficientsam/ti' in tool('list')[1]
    assert tool('path', 'tiny')[0] == tool('verify', 'tiny')[0] == 1  # not downloaded yet
    assert tool('download', 'tiny') == tool('path', 'tiny') == (0, f'{home / "tiny.pt"}\n', '')
    status, out, _ = tool('verify')
    assert status == 0 and 'OK       tiny' in out  # the missing entries are fine without names
    (home / 'tiny.pt').write_bytes(b'\0' + PAYLOAD[1:])
    status, out, _ = tool('verify')
    assert status == 1 and 'CORRUPT  tiny' in out and PAYLOAD_SHA256 in out
    status, _, err = tool('download', '--offline', 'sam_vit_h')
    assert status == 1 and 'error: sam_vit_h_4b8939.pth (sam_vit_h) is not in the cache' in err
    probe = 'import sys, efficientsam_plugins.zoo.cli; assert "torch" not in sys.modules'  # only downloads do
    assert subprocess.run([sys.executable, '-c', probe], timeout=60).returncode == 0
