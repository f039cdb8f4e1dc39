"""tools/web_demo.py: the app's functions, a real browser (Debian's chromium via playwright), 8
gradio_client users at once, and bad input through the API. One server for the module: the tiny
EfficientSAM config on seeded random weights, a 4-entry embedding cache (so embeddings get evicted).

Screenshots and the measured figures go to outputs/web_demo/."""
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import COCO_MINI, REPO_ROOT
from PIL import Image

gradio = pytest.importorskip('gradio', reason='the web demo needs gradio (pip install -e .[app])')

TINY = dict(img_size=256, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32], dec_depth=2, dec_heads=2,
            dec_mlp_dim=64, upscaling=[16, 8], iou_head_hidden_dim=32)
IMAGES = sorted(os.path.join(COCO_MINI, 'val2017', name) for name in os.listdir(os.path.join(COCO_MINI, 'val2017')))
PHOTO = os.path.join(COCO_MINI, 'val2017', '000000002149.jpg')
ARTIFACTS = os.path.join(REPO_ROOT, 'outputs', 'web_demo')
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
CACHE_SIZE = 4
MEMORY_BOUND_MB = 1500  # peak RSS of the server process (tiny model, 8 sessions, 640x480 photos)


def load_tool():
    spec = importlib.util.spec_from_file_location('web_demo', os.path.join(REPO_ROOT, 'tools', 'web_demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


web_demo = load_tool()


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp('web_demo') / 'tiny.json'
    path.write_text(json.dumps(TINY))
    return str(path)


@contextmanager
def one_thread():
    """The server runs with OMP_NUM_THREADS=1; references are computed the same way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reference_predictor(tiny_config):
    """The predictor the server builds: the same seed before the same build."""
    from efficientsam_plugins.build import build_predictor
    torch.manual_seed(0)
    return build_predictor(tiny_config, pretrained=False)


def read_rgb(path):
    with Image.open(path) as picture:
        return np.asarray(picture.convert('RGB'))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def server(tiny_config, tmp_path_factory):
    """The demo on 127.0.0.1 in its own process: (url, pid)."""
    port = free_port()
    log = tmp_path_factory.mktemp('web_demo_log') / 'server.log'
    env = dict(os.environ, OMP_NUM_THREADS='1', GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1')
    with open(log, 'w') as stream:
        process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'tools', 'web_demo.py'), '--host',
                                    '127.0.0.1', '--port', str(port), '--model', tiny_config, '--random-weights',
                                    '--cache-size', str(CACHE_SIZE)], stdout=stream, stderr=subprocess.STDOUT,
                                   env=env, cwd=REPO_ROOT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f'the web demo did not start:\n{log.read_text()}')
            time.sleep(0.5)
    yield url, process.pid
    process.terminate()
    process.wait(30)
    assert 'RANDOM weights' in log.read_text()


def peak_rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status') as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith('VmHWM')) / 1024


def save_figures(name: str, test: str, notes: str, **figures) -> None:
    """The figures of one test, as a benchmark tool writes them (docs/hooks.py can render the file)."""
    from efficientsam_plugins.cli import write_benchmark_json
    os.makedirs(ARTIFACTS, exist_ok=True)
    write_benchmark_json(os.path.join(ARTIFACTS, name), '-m pytest', [f'tests/test_web_demo.py::{test}'], [figures],
                         notes)
    print(json.dumps(figures))


# ------------------------------------------------------------------------------- the functions, in process


def test_app_functions_match_the_predictor(tiny_config):
    args = web_demo.parse_args(['--model', tiny_config, '--random-weights', '--cache-size', '1'])
    app = web_demo.App(args)
    image = read_rgb(PHOTO)
    with one_thread():
        reference = reference_predictor(tiny_config)
        reference.set_image(image)
        session = web_demo.set_image(app, web_demo.Session(model_key=app.default_key), image)
        assert 'encoder' in session.timing and app.embeddings_computed == 1
        web_demo.add_point(app, session, 200, 150)
        web_demo.add_point(app, session, 300, 200)
        masks, iou, _ = reference.predict(points=[[200, 150], [300, 200]], point_labels=[1, 1])
        assert app.embeddings_computed == 1  # clicks after the first run only the decoder
        np.testing.assert_array_equal(session.masks, masks)
        np.testing.assert_array_equal(web_demo.union_mask(session), masks[0, iou[0].argmax()])
        session.choice = '3'
        np.testing.assert_array_equal(web_demo.union_mask(session), masks[0, 2])
        with pytest.raises(web_demo.DemoError, match='negative clicks need a model built with'):
            web_demo.add_point(app, session, 10, 10, negative=True)
        web_demo.undo(app, session)
        np.testing.assert_array_equal(session.masks, reference.predict(points=[[200, 150]])[0])

        # Boxes: every box its own object, decoded in one call.
        boxes = [(50, 40, 300, 260), (320, 100, 600, 400)]
        for box in boxes:
            web_demo.add_box(app, session, *box)
        np.testing.assert_array_equal(session.masks, reference.predict(boxes=np.array(boxes, np.float32))[0])
        found = web_demo.records(session)
        assert [r['point_coords'] for r in found] == [[[50, 40], [300, 260]], [[320, 100], [600, 400]]]
        assert set(found[0]) == {'segmentation', 'area', 'bbox', 'predicted_iou', 'point_coords', 'stability_score',
                                 'crop_box'}
        # A second session evicts the first's embedding (cache of 1): the next click recomputes it.
        other = web_demo.set_image(app, web_demo.Session(model_key=app.default_key), read_rgb(IMAGES[1]))
        web_demo.add_point(app, session, 100, 100)
        assert 'computed again' in session.timing and app.embeddings_computed == 3
        np.testing.assert_array_equal(session.masks, reference.predict(points=[[100, 100]])[0])
        assert other.masks is None

        web_demo.cutout(app, session)
        with Image.open(web_demo.cutout_png(app, session)) as picture:
            assert picture.mode == 'RGBA' and picture.size == (image.shape[1], image.shape[0])
            np.testing.assert_array_equal(np.asarray(picture)[..., 3] > 0, web_demo.union_mask(session))
        web_demo.clear(app, session)
        with pytest.raises(web_demo.DemoError, match='nothing is segmented yet'):
            web_demo.cutout_png(app, session)
        # A closed or expired session leaves nothing behind.
        assert any(key[2] == session.id for key in app.cache)
        app.forget(session)
        assert not any(key[2] == session.id for key in app.cache)
        assert not os.path.exists(os.path.join(app.workdir, session.id))


def test_onnx_export_folder(tiny_config, tmp_path):
    pytest.importorskip('onnxruntime', reason='the ONNX backend needs onnxruntime (pip install -e .[export])')
    from efficientsam_plugins.build import build_model
    from efficientsam_plugins.deploy import export_onnx, load_onnx_predictor
    export_onnx(build_model(tiny_config, pretrained=False), str(tmp_path / 'onnx'), random_weights=True)
    app = web_demo.App(web_demo.parse_args(['--onnx', str(tmp_path / 'onnx')]))
    image = read_rgb(PHOTO)[:200, :300].copy()
    session = web_demo.set_image(app, web_demo.Session(model_key=app.default_key), image)
    web_demo.add_point(app, session, 120, 90)
    reference = load_onnx_predictor(str(tmp_path / 'onnx'))
    reference.set_image(image)
    np.testing.assert_array_equal(session.masks, reference.predict(points=[[120, 90]])[0])
    assert 'RANDOM WEIGHTS' in app.model(app.default_key).banner  # the export's manifest says so


def test_benchmark_writes_the_click_latency(tiny_config, tmp_path):
    out = tmp_path / 'web_demo.json'
    argv = ['--model', tiny_config, '--random-weights', '--benchmark', str(out)]
    rows = web_demo.benchmark(web_demo.parse_args(argv), argv, clicks=2)
    written = json.loads(out.read_text())
    assert written['rows'] == rows and written['command'].startswith('python tools/web_demo.py --model')
    assert rows[0]['clicks'] == 2 and rows[0]['click handler median ms'] > 0 and rows[0]['predict median ms'] > 0
    assert 'random weights' in written['notes']


# ------------------------------------------------------------------------------------------ a real browser


def fetch(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=30).read()


def wait_for_new_link(page, selector: str, old) -> str:
    page.wait_for_function('([selector, old]) => { const a = document.querySelector(selector + " a"); '
                           'return a && a.href !== old; }', arg=[selector, old], timeout=60000)
    return page.locator(f'{selector} a').first.get_attribute('href')


def fetched_mask(url: str) -> np.ndarray:
    path = os.path.join(ARTIFACTS, 'downloaded_mask.png')
    with open(path, 'wb') as stream:
        stream.write(fetch(url))
    with Image.open(path) as picture:
        return np.asarray(picture) > 0


def test_browser_click_box_everything(server, tiny_config):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f'the browser test needs Debian\'s chromium at {CHROMIUM} (apt-get install -y chromium)')
    playwright = pytest.importorskip('playwright.sync_api', reason='the browser test needs playwright-python')
    url, _ = server
    os.makedirs(ARTIFACTS, exist_ok=True)
    image = read_rgb(PHOTO)
    reference = reference_predictor(tiny_config)
    start = time.perf_counter()
    with playwright.sync_playwright() as driver, one_thread():
        reference.set_image(image)
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            page.goto(url)
            page.wait_for_selector('#image_in')
            assert 'RANDOM WEIGHTS' in page.inner_text('#banner')
            page.locator('#image_in input[type=file]').set_input_files(PHOTO)
            page.wait_for_selector('#overlay img')
            page.wait_for_function('document.querySelector("#info").innerText.includes("encoder")')
            page.screenshot(path=os.path.join(ARTIFACTS, '1_uploaded.png'), full_page=True)

            # A click: the downloaded mask equals the predictor's best mask for the same point.
            overlay = page.locator('#overlay img')
            box = overlay.bounding_box()
            overlay.click(position={'x': box['width'] * 0.4, 'y': box['height'] * 0.5})
            mask_url = wait_for_new_link(page, '#mask_file', None)
            json_url = page.locator('#json_file a').first.get_attribute('href')
            point = json.loads(fetch(json_url))[0]['point_coords'][0]
            assert abs(point[0] - image.shape[1] * 0.4) <= 2 and abs(point[1] - image.shape[0] * 0.5) <= 2
            masks, iou, _ = reference.predict(points=[point], best_only=True)
            np.testing.assert_array_equal(fetched_mask(mask_url), masks[0, 0])
            page.screenshot(path=os.path.join(ARTIFACTS, '2_click.png'), full_page=True)

            # A box: two clicks on opposite corners.
            page.locator('#mode').get_by_text('box', exact=True).click()
            page.wait_for_function('!document.querySelector("#mask_file a")')
            overlay.click(position={'x': box['width'] * 0.15, 'y': box['height'] * 0.2})
            page.wait_for_function('document.querySelector("#info").innerText.includes("first corner")')
            overlay.click(position={'x': box['width'] * 0.55, 'y': box['height'] * 0.75})
            mask_url = wait_for_new_link(page, '#mask_file', None)
            json_url = page.locator('#json_file a').first.get_attribute('href')
            corners = json.loads(fetch(json_url))[0]['point_coords']
            masks, _, _ = reference.predict(boxes=[corners[0] + corners[1]], best_only=True)
            np.testing.assert_array_equal(fetched_mask(mask_url), masks[0, 0])
            page.screenshot(path=os.path.join(ARTIFACTS, '3_box.png'), full_page=True)

            # Everything on a 4x4 grid, no thresholds: as many masks as the generator finds.
            page.get_by_text('Everything (automatic mask generator)').click()
            for selector, value in (('#points_per_side', '4'), ('#iou_thresh', '0'), ('#stability_thresh', '0')):
                field = page.locator(f'{selector} input[type=number]')
                field.fill(value)
                field.press('Enter')
            page.locator('#everything').click()
            page.wait_for_function('document.querySelector("#info").innerText.includes("mask(s)")', timeout=120000)
            from efficientsam_plugins.automatic_mask_generator import AutomaticMaskGenerator
            expected = AutomaticMaskGenerator(reference, points_per_side=4, pred_iou_thresh=0,
                                              stability_score_thresh=0).generate(image)
            assert f'**{len(expected)} mask(s)**'.strip('*') in page.inner_text('#info')
            page.screenshot(path=os.path.join(ARTIFACTS, '4_everything.png'), full_page=True)
        finally:
            browser.close()
    save_figures('browser.json', 'test_browser_click_box_everything',
                 'tiny EfficientSAM config on seeded random weights; chromium headless; the wall time covers '
                 'the browser session and the in-test reference predictions, not the server start',
                 steps='upload, click, box, everything 4x4', wall_s=round(time.perf_counter() - start, 1))


# ------------------------------------------------------------------------------------------------ 8 users


def new_client(url: str):
    """A gradio_client user; generous HTTP timeouts, for a loaded 2-core machine."""
    from gradio_client import Client
    return Client(url, verbose=False, httpx_kwargs={'timeout': 120})


def user_calls(image: str, seed: int):
    """One user's calls (endpoint, inputs): an image, two clicks, two boxes, a one-call segment."""
    rng = np.random.default_rng(seed)
    height, width = read_rgb(image).shape[:2]
    calls = [('/set_image', image)]
    calls += [('/add_point', rng.uniform(0, width), rng.uniform(0, height), False) for _ in range(2)]
    for _ in range(2):
        x1, y1 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
        calls.append(('/add_box', x1, y1, x1 + width / 3, y1 + height / 3))
    prompts = {'points': [[width / 2, height / 2]], 'labels': [1], 'boxes': [[0, 0, width / 2, height]]}
    calls.append(('/segment', image, json.dumps(prompts)))
    return calls


def run_client(client, calls):
    """What one gradio_client user sees: (overlay, mask PNG, JSON records) per call."""
    from gradio_client import handle_file
    seen = []
    for endpoint, *inputs in calls:
        if endpoint == '/segment':
            found, overlay = client.predict(handle_file(inputs[0]), inputs[1], api_name=endpoint)
            seen.append((read_rgb(overlay), None, found))
            continue
        inputs = [handle_file(inputs[0])] if endpoint == '/set_image' else inputs
        overlay, _, _, mask_path, json_path = client.predict(*inputs, api_name=endpoint)
        seen.append((read_rgb(overlay), None if mask_path is None else np.asarray(Image.open(mask_path)),
                     None if json_path is None else json.load(open(json_path))))
    return seen


def run_alone(app, calls):
    """The same calls through the app's functions in this process: one user, nobody else."""
    session = web_demo.Session(model_key=app.default_key)
    seen = []
    for endpoint, *inputs in calls:
        if endpoint == '/segment':
            found, overlay = web_demo.segment(app, session, *inputs)
            seen.append((overlay, None, json.loads(json.dumps(found))))
            continue
        if endpoint == '/set_image':
            web_demo.set_image(app, session, web_demo.read_image(inputs[0], app.args.max_pixels))
        else:
            {'/add_point': web_demo.add_point, '/add_box': web_demo.add_box}[endpoint](app, session, *inputs)
        mask = web_demo.union_mask(session)
        seen.append((web_demo.overlay(session), None if mask is None else mask.astype(np.uint8) * 255,
                     None if mask is None else json.loads(json.dumps(web_demo.records(session)))))
    return seen


def assert_same(got, expected):
    assert len(got) == len(expected)
    for (overlay, mask, found), (overlay_ref, mask_ref, found_ref) in zip(got, expected):
        np.testing.assert_array_equal(overlay, overlay_ref)
        np.testing.assert_array_equal(mask, mask_ref)
        assert found == found_ref


def test_eight_clients_at_once(server, tiny_config):
    url, pid = server
    users = [user_calls(image, seed) for seed, image in enumerate(IMAGES)]
    app = web_demo.App(web_demo.parse_args(['--model', tiny_config, '--random-weights']))
    with one_thread():
        alone = [run_alone(app, calls) for calls in users]
    start = time.perf_counter()
    with ThreadPoolExecutor(len(users)) as pool:
        together = list(pool.map(lambda calls: run_client(new_client(url), calls), users))
    wall = time.perf_counter() - start
    for got, expected, calls in zip(together, alone, users):
        assert_same(got, expected)
        assert got[0][0].shape[:2] == read_rgb(calls[0][1]).shape[:2]  # each user sees their own image
    # A new client is answered afterwards (the cache holds 4 embeddings: the first user's were evicted).
    assert_same(run_client(new_client(url), users[0]), alone[0])
    peak = peak_rss_mb(pid)
    save_figures('concurrency.json', 'test_eight_clients_at_once',
                 f'tiny EfficientSAM config on seeded random weights, {CACHE_SIZE}-entry embedding cache, COCO '
                 f'val2017 photos; wall time of the 8 clients together (client start included); peak RSS: the '
                 f'server process\'s VmHWM since it started (the browser test ran on it first)',
                 clients=len(users), calls=sum(map(len, users)), wall_s=round(wall, 1), server_peak_rss_mb=round(peak),
                 bound_mb=MEMORY_BOUND_MB)
    assert peak < MEMORY_BOUND_MB


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_gets_a_message_and_the_session_goes_on(server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    url, _ = server
    client = new_client(url)
    client.predict(handle_file(PHOTO), api_name='/set_image')
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    huge = tmp_path / 'huge.png'
    Image.new('L', (5000, 4000)).save(huge)
    junk = tmp_path / 'not_an_export'
    junk.mkdir()
    (junk / 'model.onnx').write_text('junk')
    cases = [
        (('/set_image', handle_file(str(text))), 'not an image'),
        (('/segment', handle_file(str(text)), '{"points": [[1, 1]]}'), 'not an image'),
        (('/set_image', handle_file(str(huge))), r'5000x4000 \(20.0 MP\); this demo takes at most 16.8 MP'),
        (('/add_point', 700, 20, False), r'outside the 640x427 image'),
        (('/segment', handle_file(PHOTO), '{"points": [[-5, 20]]}'), 'outside the 640x427 image'),
        (('/add_box', 10, 20, 10, 300), 'has no area'),
        (('/segment', handle_file(PHOTO), '{"boxes": [[10, 20, 200, 20]]}'), 'has no area'),
        (('/segment', handle_file(PHOTO), '{"points": [[1, 2'), 'prompts are not valid JSON'),
        (('/load_onnx', 'EfficientSAM-Ti', 'fp32', str(junk)), 'cannot load ONNX export'),
        (('/load_onnx', 'EfficientSAM-Ti', 'fp32', str(tmp_path / 'missing')), 'does not exist'),
    ]
    for (endpoint, *inputs), message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*inputs, api_name=endpoint)
        # The same session goes on: its image is still there and a click decodes.
        _, info, _, mask_path, _ = client.predict(320, 200, False, api_name='/add_point')
        assert 'decoder' in info and mask_path is not None
        client.predict(api_name='/undo')
