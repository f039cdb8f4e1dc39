"""Model zoo: downloads from a local HTTP server (and file:// URLs) on small generated payloads.

Nothing here reaches beyond 127.0.0.1; the server can drop a connection mid-file, ignore Range
requests, or send slowly (so that two processes really overlap).
"""
import hashlib
import json
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from efficientsam_plugins import zoo
from efficientsam_plugins.zoo import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with Range support; ``server.modes`` selects misbehaviour."""

    def do_GET(self):
        state = self.server
        state.requests.append((self.path, self.headers.get('Range')))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        modes = state.modes.setdefault(self.path, set())
        requested = self.headers.get('Range')
        start = 0
        if requested and 'ignore_range' not in modes:
            start = int(requested.split('=', 1)[1].split('-', 1)[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        if 'drop_once' in modes:
            modes.discard('drop_once')
            payload = payload[:len(payload) // 3]
        for offset in range(0, len(payload), 16384):
            self.wfile.write(payload[offset:offset + 16384])
            state.bytes_sent += len(payload[offset:offset + 16384])
            if 'slow' in modes:
                time.sleep(0.02)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.modes, httpd.requests, httpd.bytes_sent = {}, {}, [], 0
    httpd.url = lambda path: f'http://127.0.0.1:{httpd.server_address[1]}{path}'
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh cache, no offline/mirror settings, and an empty user manifest to fill in."""
    cache = tmp_path / 'cache'
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(cache))
    monkeypatch.delenv('EFFICIENTSAM_OFFLINE', raising=False)
    monkeypatch.delenv('EFFICIENTSAM_ZOO_MIRROR', raising=False)
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(tmp_path / 'user.json'))
    write_manifest(tmp_path / 'user.json', [])
    return cache


def entry(name='tiny', urls=(), size=len(PAYLOAD), sha256=PAYLOAD_SHA256, **overrides):
    record = dict(name=name, filename=f'{name}.pt', urls=list(urls), size=size, sha256=sha256,
                  license='Apache-2.0', format='efficientsam', description='test payload')
    record.update(overrides)
    return record


def write_manifest(path, entries):
    Path(path).write_text(json.dumps({'entries': entries}))


def use_manifest(tmp_path, *entries):
    write_manifest(tmp_path / 'user.json', list(entries))


def file_requests(server, path):
    return [requested for requested in server.requests if requested[0] == path]


def test_plain_download_is_verified_and_then_served_from_cache(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))

    path = zoo.get_checkpoint('tiny', progress=False)

    assert path == str(home / 'tiny.pt')
    assert Path(path).read_bytes() == PAYLOAD
    assert sorted(os.listdir(home)) == ['tiny.pt']  # no .part, no .lock left behind
    assert zoo.verify('tiny').status == 'OK'
    assert zoo.get_checkpoint('tiny', progress=False) == path
    assert len(file_requests(server, '/w/tiny.pt')) == 1


def test_progress_bar_goes_to_stderr(server, home, tmp_path, capsys):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    zoo.get_checkpoint('tiny', progress=True)
    captured = capsys.readouterr()
    assert '100.0%' in captured.err and 'tiny.pt' in captured.err
    assert captured.out == ''


def test_dropped_connection_is_resumed_with_range(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    server.modes['/w/tiny.pt'] = {'drop_once'}
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))

    path = zoo.get_checkpoint('tiny', progress=False)

    assert Path(path).read_bytes() == PAYLOAD
    first, second = file_requests(server, '/w/tiny.pt')
    assert first[1] is None
    assert second[1] == f'bytes={len(PAYLOAD) // 3}-'
    assert server.bytes_sent == len(PAYLOAD)  # nothing was sent twice


def test_partial_file_from_an_earlier_run_is_resumed(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    home.mkdir()
    (home / 'tiny.pt.part').write_bytes(PAYLOAD[:100_000])

    zoo.get_checkpoint('tiny', progress=False)

    assert (home / 'tiny.pt').read_bytes() == PAYLOAD
    assert file_requests(server, '/w/tiny.pt') == [('/w/tiny.pt', 'bytes=100000-')]
    assert server.bytes_sent == len(PAYLOAD) - 100_000


def test_server_ignoring_range_restarts_cleanly(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    server.modes['/w/tiny.pt'] = {'ignore_range'}
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    home.mkdir()
    (home / 'tiny.pt.part').write_bytes(b'x' * 1000)  # would corrupt the file if appended to

    zoo.get_checkpoint('tiny', progress=False)

    assert (home / 'tiny.pt').read_bytes() == PAYLOAD
    assert file_requests(server, '/w/tiny.pt') == [('/w/tiny.pt', 'bytes=1000-')]
    assert sorted(os.listdir(home)) == ['tiny.pt']


def test_hash_mismatch_leaves_nothing_and_names_file_and_hashes(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    wrong = '0' * 64
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')], sha256=wrong))

    with pytest.raises(zoo.ChecksumError) as raised:
        zoo.get_checkpoint('tiny', progress=False)

    message = str(raised.value)
    assert 'tiny.pt' in message and wrong in message and PAYLOAD_SHA256 in message
    assert os.listdir(home) == []


def test_size_mismatch_is_reported(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD + b'extra'
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    with pytest.raises(zoo.ChecksumError, match='size mismatch for tiny.pt'):
        zoo.get_checkpoint('tiny', progress=False)
    assert os.listdir(home) == []


def _fetch_in_child(barrier, results):
    barrier.wait()
    results.put(zoo.get_checkpoint('tiny', progress=False))


def test_two_processes_download_once(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    server.modes['/w/tiny.pt'] = {'slow'}  # about 0.4 s, so the two processes overlap
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    context = multiprocessing.get_context('spawn')
    barrier, results = context.Barrier(2), context.Queue()
    children = [context.Process(target=_fetch_in_child, args=(barrier, results))
                for _ in range(2)]
    for child in children:
        child.start()
    paths = [results.get(timeout=20) for _ in children]
    for child in children:
        child.join(timeout=20)
        assert child.exitcode == 0

    assert paths == [str(home / 'tiny.pt')] * 2
    assert file_requests(server, '/w/tiny.pt') == [('/w/tiny.pt', None)]
    assert zoo.verify('tiny').ok
    assert sorted(os.listdir(home)) == ['tiny.pt']


def test_offline_hit_uses_the_cache_without_network(server, home, tmp_path, monkeypatch):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    zoo.get_checkpoint('tiny', progress=False)
    monkeypatch.setenv('EFFICIENTSAM_OFFLINE', '1')

    assert zoo.get_checkpoint('tiny') == str(home / 'tiny.pt')
    assert len(server.requests) == 1


def test_offline_miss_names_the_file_and_how_to_get_it(server, home, tmp_path, monkeypatch):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    monkeypatch.setenv('EFFICIENTSAM_OFFLINE', '1')

    with pytest.raises(zoo.OfflineError) as raised:
        zoo.get_checkpoint('tiny')

    message = str(raised.value)
    assert str(home / 'tiny.pt') in message
    assert 'tools/zoo.py download tiny' in message and server.url('/w/tiny.pt') in message
    assert server.requests == []
    assert zoo.get_checkpoint('tiny', offline=False, progress=False) == str(home / 'tiny.pt')


def test_offline_argument_overrides_the_environment(home, tmp_path):
    use_manifest(tmp_path, entry(urls=['http://127.0.0.1:9/unused/tiny.pt']))
    with pytest.raises(zoo.OfflineError):
        zoo.get_checkpoint('tiny', offline=True)


def test_user_manifest_adds_and_overrides_entries(home, tmp_path):
    source = tmp_path / 'tiny.pt'
    source.write_bytes(PAYLOAD)
    use_manifest(tmp_path, entry(urls=[source.as_uri()]),
                 entry(name='sam_vit_b', urls=['https://intranet.example/sam_vit_b.pth'],
                       size=None, sha256=None, format='sam'))

    names = [item.name for item in zoo.list_entries()]
    assert names[:6] == ['efficientsam_ti', 'efficientsam_s', 'sam_vit_h', 'sam_vit_l',
                         'sam_vit_b', 'mobile_sam']
    assert names[6:] == ['tiny']
    assert zoo.get_entry('sam_vit_b').urls == ('https://intranet.example/sam_vit_b.pth',)
    assert zoo.get_entry('sam_vit_b').sha256 is None


@pytest.mark.parametrize('field, value, expected', [
    ('sha256', 'abc', 'expected 64 hex digits'),
    ('size', -3, 'positive number of bytes'),
    ('urls', ['ftp://host/tiny.pt'], 'http://, https://, file://'),
    ('filename', '../escape.pt', 'plain name'),
    ('sha265', PAYLOAD_SHA256, 'unknown field'),
])
def test_invalid_user_manifest_names_file_and_field(home, tmp_path, field, value, expected):
    record = entry(urls=['https://example.invalid/tiny.pt'])
    record[field] = value
    use_manifest(tmp_path, record)
    with pytest.raises(zoo.ManifestError) as raised:
        zoo.list_entries()
    message = str(raised.value)
    assert str(tmp_path / 'user.json') in message
    assert f"field {field!r}" in message and expected in message


def test_user_manifest_missing_field_and_bad_json(home, tmp_path):
    record = entry(urls=['https://example.invalid/tiny.pt'])
    del record['license']
    use_manifest(tmp_path, record)
    with pytest.raises(zoo.ManifestError, match="field 'license': missing"):
        zoo.get_entry('tiny')
    (tmp_path / 'user.json').write_text('{"entries": [')
    with pytest.raises(zoo.ManifestError, match='not valid JSON'):
        zoo.list_entries()


def test_mirror_replaces_every_base_url(server, home, tmp_path, monkeypatch):
    server.files['/mirror/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/original/tiny.pt'),
                                       'https://example.invalid/other/tiny.pt']))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MIRROR', server.url('/mirror/'))

    assert zoo.get_entry('tiny').urls == (server.url('/mirror/tiny.pt'),)
    assert zoo.get_entry('sam_vit_b').urls == (server.url('/mirror/sam_vit_b_01ec64.pth'),)
    assert zoo.get_entry('efficientsam_ti').urls == (server.url('/mirror/efficient_sam_vitt.pt'),)
    assert Path(zoo.get_checkpoint('tiny', progress=False)).read_bytes() == PAYLOAD
    assert [path for path, _ in server.requests] == ['/mirror/tiny.pt']


def test_mirror_must_be_a_url(home, monkeypatch):
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MIRROR', '/some/dir')
    with pytest.raises(zoo.ManifestError, match='EFFICIENTSAM_ZOO_MIRROR'):
        zoo.list_entries()


def test_404_names_url_and_status(server, home, tmp_path):
    url = server.url('/w/missing.pt')
    use_manifest(tmp_path, entry(urls=[url]))
    with pytest.raises(zoo.DownloadError) as raised:
        zoo.get_checkpoint('tiny', progress=False)
    assert f'{url}: HTTP 404' in str(raised.value)
    assert os.listdir(home) == []


def test_mirrors_are_tried_in_order_and_every_failure_is_listed(server, home, tmp_path):
    missing, unreachable = server.url('/w/missing.pt'), 'http://127.0.0.1:9/tiny.pt'
    absent_file = (tmp_path / 'absent.pt').as_uri()
    use_manifest(tmp_path, entry(urls=[missing, unreachable, absent_file]))

    with pytest.raises(zoo.DownloadError) as raised:
        zoo.get_checkpoint('tiny', progress=False)

    lines = str(raised.value).splitlines()
    assert lines[1].startswith(f'  - {missing}: HTTP 404')
    assert lines[2].startswith(f'  - {unreachable}: cannot reach it (no network?)')
    assert lines[3].startswith(f'  - {absent_file}: cannot read it')

    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[missing, server.url('/w/tiny.pt')]))
    assert Path(zoo.get_checkpoint('tiny', progress=False)).read_bytes() == PAYLOAD


def test_file_urls_in_manifest_and_as_argument(home, tmp_path):
    source = tmp_path / 'tiny.pt'
    source.write_bytes(PAYLOAD)
    use_manifest(tmp_path, entry(urls=[source.as_uri()]))

    assert Path(zoo.get_checkpoint('tiny', progress=False)).read_bytes() == PAYLOAD
    assert zoo.get_checkpoint(source.as_uri()) == str(home / 'tiny.pt')  # the zoo entry's URL

    other = tmp_path / 'other.pth'
    other.write_bytes(b'ad hoc')
    ad_hoc = zoo.get_checkpoint(other.as_uri(), progress=False)
    assert ad_hoc.endswith('_other.pth') and Path(ad_hoc).read_bytes() == b'ad hoc'


def test_existing_path_is_returned_and_unknown_names_are_explained(home, tmp_path):
    local = tmp_path / 'mine.pth'
    local.write_bytes(b'weights')
    assert zoo.get_checkpoint(local) == str(local)
    with pytest.raises(zoo.UnknownCheckpointError) as raised:
        zoo.get_checkpoint('no_such_model')
    assert 'efficientsam_ti' in str(raised.value) and 'existing file' in str(raised.value)
    with pytest.raises(zoo.DownloadError, match='unsupported URL'):
        zoo.get_checkpoint('s3://bucket/model.pt')


def test_corrupt_cached_file_is_replaced_by_download(server, home, tmp_path):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))
    home.mkdir()
    (home / 'tiny.pt').write_bytes(bytes(len(PAYLOAD)))  # right size, wrong bytes

    assert zoo.verify('tiny').status == 'CORRUPT'
    zoo.download('tiny', progress=False)
    assert zoo.verify('tiny').status == 'OK'


def test_cli_list_path_and_verify(server, home, tmp_path, capsys):
    server.files['/w/tiny.pt'] = PAYLOAD
    use_manifest(tmp_path, entry(urls=[server.url('/w/tiny.pt')]))

    assert cli.main(['list']) == 0
    listing = capsys.readouterr().out
    assert 'efficientsam_ti' in listing and 'mobile_sam' in listing and 'tiny' in listing

    assert cli.main(['path', 'tiny']) == 1  # not downloaded yet
    assert capsys.readouterr().out.strip() == str(home / 'tiny.pt')
    assert cli.main(['verify', 'tiny']) == 1
    assert capsys.readouterr().out.startswith('MISSING')

    assert cli.main(['download', 'tiny']) == 0
    assert capsys.readouterr().out.strip() == str(home / 'tiny.pt')
    assert cli.main(['path', 'tiny']) == 0
    assert cli.main(['verify', 'tiny']) == 0
    assert 'OK' in capsys.readouterr().out
    assert cli.main(['verify']) == 0  # other entries are MISSING, which is fine without names
    assert 'MISSING  sam_vit_h' in capsys.readouterr().out

    cached = home / 'tiny.pt'
    cached.write_bytes(b'\0' + cached.read_bytes()[1:])
    assert cli.main(['verify']) == 1
    report = capsys.readouterr().out
    assert 'CORRUPT  tiny' in report and PAYLOAD_SHA256 in report

    assert cli.main(['download', '--offline', 'sam_vit_h']) == 1
    assert 'offline mode is on' in capsys.readouterr().err


def test_cli_script_and_package_import_need_no_torch(home, tmp_path):
    probe = subprocess.run(
        [sys.executable, '-c', 'import sys, efficientsam_plugins.zoo; '
                               'assert "torch" not in sys.modules, "the zoo imported torch"'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
    script = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'zoo.py'), 'list'],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert script.returncode == 0, script.stderr
    assert 'sam_vit_h' in script.stdout
