"""The deployment clients' own released code, unmodified, on graphs exported here (tiny EfficientSAM,
seeded weights): osam (labelme's AI polygons) and samexporter on the default (official) contract,
AnyLabeling / X-AnyLabeling's ``SegmentAnythingONNX`` on ``contract='sam'``, OpenCV's dnn module on
``contract='opencv'``, and supervision on the everything generator's records. Masks are compared with the PyTorch
predictor (mean IoU >= 0.99). A client that is not installed skips, naming itself: install them
with ``pip install 'efficientsam_plugins[clients]'`` plus the ``--no-deps`` ones of
docs/deployment.md ("Testing against the clients").

Set ``CLIENT_REPORT=FILE.json`` to write each client's agreement and per-call time to FILE as a benchmark
result (``cli.write_benchmark_json``, rendered on docs/deployment.md), ``CLIENTS_FULL_SIZE=1`` to repeat every
client on full-size EfficientSAM-Ti (seeded weights).
"""
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import time
import types

import numpy as np
import pytest
from conftest import EFFICIENTSAM_TINY, TEST_DATA, official_state_dict
from PIL import Image

pytest.importorskip('onnxruntime', reason="onnxruntime is not installed: pip install 'efficientsam_plugins[export]'")
cv2 = pytest.importorskip('cv2', reason='opencv-python is not installed (every client needs it)')

from efficientsam_plugins.build import build_efficient_sam, build_squeeze_sam  # noqa: E402
from efficientsam_plugins.cli import write_benchmark_json  # noqa: E402
from efficientsam_plugins.deploy import export_onnx, read_manifest  # noqa: E402
from efficientsam_plugins.deploy.onnx_export import SAM_CANVAS  # noqa: E402
from efficientsam_plugins.predictor import EfficientSamPredictor  # noqa: E402

BOXES = [[400, 200, 800, 600], [50, 100, 450, 590]]
CLICKS = [[580, 350], [250, 330]]
PROMPTS = [('box', box) for box in BOXES] + [('click', click) for click in CLICKS]


def tiny_config(folder):
    with open(os.path.join(folder, 'reference.json')) as stream:
        return json.load(stream)['config']


@pytest.fixture(scope='module')
def image():
    return np.array(Image.open(os.path.join(EFFICIENTSAM_TINY, 'dogs.png')).convert('RGB'))


FULL_SIZE = pytest.mark.skipif(not os.environ.get('CLIENTS_FULL_SIZE'), reason='full-size EfficientSAM-Ti takes '
                               'minutes per client on a CPU: set CLIENTS_FULL_SIZE=1 to run it')


@pytest.fixture(scope='module', params=['tiny', pytest.param('vit_t', marks=FULL_SIZE)])
def model(request):
    """The tiny reference model, and (with ``CLIENTS_FULL_SIZE=1``) full-size EfficientSAM-Ti on seeded
    random weights: the released architecture, so the clients see real graph sizes (1024 input,
    64 x 64 embeddings)."""
    if request.param == 'tiny':
        return build_efficient_sam(tiny_config(EFFICIENTSAM_TINY), os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'))
    return build_efficient_sam('ti', {'model': official_state_dict('ti')})


@pytest.fixture(scope='module')
def official(model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('clients') / 'official')
    export_onnx(model, out, name='tiny')
    return out


@pytest.fixture(scope='module')
def sam_contract(model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('clients') / 'sam')
    export_onnx(model, out, contract='sam', name='tiny')
    return out


@pytest.fixture(scope='module')
def reference(model, image):
    predictor = EfficientSamPredictor(model)
    predictor.set_image(image)
    return predictor


def best_mask(predictor, kind, prompt, return_logits=False):
    """The PyTorch predictor's highest-IoU candidate ``[H, W]`` for a box or a click."""
    args = dict(boxes=[prompt]) if kind == 'box' else dict(points=[prompt])
    masks, _, _ = predictor.predict(**args, best_only=True, return_logits=return_logits)
    return masks[0, 0]


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


REPORT = []  # every agree() record of this run


@pytest.fixture(scope='module', autouse=True)
def client_report():
    """Writes the agreement records as a benchmark result when ``CLIENT_REPORT`` names a file."""
    yield
    if os.environ.get('CLIENT_REPORT') and REPORT:
        write_benchmark_json(os.environ['CLIENT_REPORT'], '-m pytest', ['tests/test_clients.py'], REPORT,
                             notes='Written by CLIENT_REPORT=FILE.json (CLIENTS_FULL_SIZE=1 adds EfficientSAM-Ti). '
                                   'Seeded RANDOM weights: the figures measure that each client reproduces the '
                                   'PyTorch predictor, not mask quality; seconds per call through the '
                                   "client's own call, image encoded once (OpenCV's single graph runs the "
                                   'encoder on every call).')


def agree(client, reference_masks, client_masks, seconds):
    """Asserts mean IoU >= 0.99 and records the figures."""
    ious = [iou(a, b) for a, b in zip(reference_masks, client_masks)]
    case = re.search(r'\[(.*)\]', os.environ.get('PYTEST_CURRENT_TEST', ''))
    model = 'EfficientSAM-Ti' if case and 'vit_t' in case.group(1) else 'tiny reference'
    record = dict(client=client, model=model, mean_iou=round(float(np.mean(ious)), 5), min_iou=round(min(ious), 5),
                  prompts=len(ious), seconds_per_call=round(seconds / len(ious), 4))
    REPORT.append(record)
    assert all(mask.any() for mask in reference_masks), 'a reference mask is empty: the comparison would be void'
    assert record['mean_iou'] >= 0.99, record


def require(distribution):
    """The installed version of a client, or a skip naming it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f'{distribution} is not installed (pip install "efficientsam_plugins[clients]")')


def test_osam_runs_the_default_export(official, reference, image, tmp_path, monkeypatch):
    """osam 0.8 (labelme's AI polygons) with its own ``EfficientSam`` model class: the graphs go into
    osam's blob cache under their sha256 (as osam verifies its downloads), the model is registered
    by name, and ``osam.apis.generate`` runs it, keeping candidate 0."""
    require('osam')
    import osam.apis
    from osam import types as osam_types
    from osam._models.efficientsam import EfficientSam10m
    monkeypatch.setenv('HOME', str(tmp_path))  # osam's cache is ~/.cache/osam
    manifest = read_manifest(official)
    blobs = {}
    for role in ('encoder', 'decoder'):
        file = manifest['graphs'][role]
        blob = osam_types.Blob(url=f'file://{os.path.join(official, file)}', hash=f'sha256:{manifest["sha256"][file]}')
        os.makedirs(os.path.dirname(blob.path), exist_ok=True)
        shutil.copy(os.path.join(official, file), blob.path)
        blobs[role] = blob
    model_type = type('EfficientSamExport', (EfficientSam10m,), {'name': 'efficientsam:export', '_blobs': blobs})
    monkeypatch.setattr(osam.apis, 'registered_model_types', [*osam.apis.registered_model_types, model_type])
    monkeypatch.setattr(osam.apis, 'running_model', None)
    embedding = osam.apis.generate(osam_types.GenerateRequest(model='efficientsam:export', image=image,
                                                              prompt=osam_types.Prompt(
                                                                  points=np.array([CLICKS[0]], np.float32),
                                                                  point_labels=np.array([1], np.int32))
                                                              )).image_embedding
    masks, start = [], time.perf_counter()
    for kind, prompt in PROMPTS:
        points = np.array(prompt, np.float32).reshape(-1, 2)
        labels = np.array([2, 3] if kind == 'box' else [1], np.int32)
        response = osam.apis.generate(osam_types.GenerateRequest(
            model='efficientsam:export', image_embedding=embedding,
            prompt=osam_types.Prompt(points=points, point_labels=labels)))
        annotation = response.annotations[0]
        mask = np.zeros(image.shape[:2], bool)
        box = annotation.bounding_box
        mask[box.ymin:box.ymax + 1, box.xmin:box.xmax + 1] = annotation.mask
        masks.append(mask)
    seconds = time.perf_counter() - start
    agree(f'osam {require("osam")}', [best_mask(reference, *p) for p in PROMPTS], masks, seconds)


def test_samexporter_runs_the_default_export(official, reference, image):
    """samexporter 0.5's ``EfficientSAMONNX`` (its ``--sam_variant efficient_sam``), fed BGR as its CLI does."""
    version = require('samexporter')
    from samexporter.efficient_sam_onnx import EfficientSAMONNX
    graphs = read_manifest(official)['graphs']
    client = EfficientSAMONNX(os.path.join(official, graphs['encoder']), os.path.join(official, graphs['decoder']),
                              providers='cpu')
    embedding = client.encode(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    masks, start = [], time.perf_counter()
    for kind, prompt in PROMPTS:
        mark = (dict(type='rectangle', data=prompt) if kind == 'box' else dict(type='point', data=prompt, label=1))
        masks.append(client.predict_masks(embedding, [mark])[0, 0] > 0)
    agree(f'samexporter {version}', [best_mask(reference, *p) for p in PROMPTS], masks,
          time.perf_counter() - start)


def anylabeling_distributions():
    """AnyLabeling and X-AnyLabeling both install the top-level package ``anylabeling``: each one found
    on the path (X-AnyLabeling typically in a ``--target`` folder on PYTHONPATH) is tested from its own files."""
    found = []
    for name in ('anylabeling', 'x-anylabeling-cvhub'):
        try:
            found.append(pytest.param(importlib.metadata.distribution(name), id=name))
        except importlib.metadata.PackageNotFoundError:
            found.append(pytest.param(None, id=name))
    return found


def import_client_module(root, dotted, monkeypatch):
    """``dotted`` from the package tree under ``root``, its parent packages entered without running
    their ``__init__`` (which starts the Qt GUI); the module itself runs unmodified."""
    parts = dotted.split('.')
    for name in [n for n in list(sys.modules) if n == parts[0] or n.startswith(parts[0] + '.')]:
        monkeypatch.delitem(sys.modules, name)
    for depth in range(1, len(parts)):
        package = types.ModuleType('.'.join(parts[:depth]))
        package.__path__ = [os.path.join(root, *parts[:depth])]
        monkeypatch.setitem(sys.modules, package.__name__, package)
    module = importlib.import_module(dotted)
    monkeypatch.setitem(sys.modules, dotted, module)
    return module


@pytest.mark.parametrize('distribution', anylabeling_distributions())
def test_anylabeling_runs_the_sam_contract(distribution, sam_contract, model, image, monkeypatch):
    """AnyLabeling's / X-AnyLabeling's ``SegmentAnythingONNX`` (what their ``segment_anything`` model
    type runs) on the paths of the exported YAML; the tool keeps the first mask. The reference is the
    PyTorch predictor on the same 684x1024 canvas, its logits warped back as the tool warps them."""
    if distribution is None:
        pytest.skip('not installed (AnyLabeling: pip install --no-deps anylabeling==0.4.43; X-AnyLabeling: '
                    'pip install --no-deps --target DIR x-anylabeling-cvhub==4.2.1, DIR on PYTHONPATH)')
    manifest = read_manifest(sam_contract)
    config = dict(line.split(': ', 1) for line in open(os.path.join(sam_contract, manifest['tool_config'])).read()
                  .splitlines())
    config = {key: json.loads(value) for key, value in config.items()}
    assert config['type'] == 'segment_anything' and (config['max_height'], config['max_width']) == SAM_CANVAS
    assert re.fullmatch(r'[A-Za-z0-9._-]+', config['name'])  # X-AnyLabeling's custom-model name rule
    module = import_client_module(str(distribution.locate_file('')), 'anylabeling.services.auto_labeling.sam_onnx',
                                  monkeypatch)
    client = module.SegmentAnythingONNX(os.path.join(sam_contract, config['encoder_model_path']),
                                        os.path.join(sam_contract, config['decoder_model_path']))
    embedding = client.encode(image)  # the tools pass RGB (qt_img_to_rgb_cv_img)
    masks, start = [], time.perf_counter()
    for kind, prompt in PROMPTS:
        mark = (dict(type='rectangle', data=prompt) if kind == 'box' else dict(type='point', data=prompt, label=1))
        masks.append(client.predict_masks(embedding, [mark])[0][0] > 0)  # the tool's post_process threshold
    seconds = time.perf_counter() - start
    transform = embedding['transform_matrix']
    canvas = cv2.warpAffine(image, transform[:2], SAM_CANVAS[::-1], flags=cv2.INTER_LINEAR)
    predictor = EfficientSamPredictor(model)
    predictor.set_image(canvas)
    back = np.linalg.inv(transform)[:2]
    expected = []
    for kind, prompt in PROMPTS:
        on_canvas = (np.array(prompt, np.float64).reshape(-1, 2) * transform[0, 0]).reshape(-1).tolist()
        logits = best_mask(predictor, kind, on_canvas, return_logits=True).astype(np.float32)
        expected.append(cv2.warpAffine(logits, back, image.shape[1::-1], flags=cv2.INTER_LINEAR) > 0)
    agree(f'{distribution.metadata["Name"]} {distribution.version}', expected, masks, seconds)


def test_opencv_dnn_runs_the_opencv_contract(model, image, tmp_path):
    """OpenCV's own dnn module (``cv2.dnn.readNetFromONNX``) on ``contract='opencv'``, fed as OpenCV
    Zoo's EfficientSAM demo feeds its graph (image resized to S x S, prompts scaled and padded to the
    model's point count with label -1). The reference is the PyTorch predictor on that same S x S image."""
    out = str(tmp_path / 'opencv')
    manifest = export_onnx(model, out, contract='opencv', name='tiny')
    net = cv2.dnn.readNetFromONNX(os.path.join(out, manifest['graphs']['model']))
    size, points_per_query = manifest['input_size'], manifest['max_points_per_query']
    resized = cv2.resize(image, (size, size))
    scale = np.array([size / image.shape[1], size / image.shape[0]], np.float32)
    blob = cv2.dnn.blobFromImage(resized.astype(np.float32) / 255)
    masks, start = [], time.perf_counter()
    for kind, prompt in PROMPTS:
        points = np.zeros((1, 1, points_per_query, 2), np.float32)
        labels = np.full((1, 1, points_per_query), -1, np.float32)
        given = np.array(prompt, np.float32).reshape(-1, 2) * scale
        points[0, 0, :len(given)], labels[0, 0, :len(given)] = given, ([2, 3] if kind == 'box' else [1])
        for name, value in (('batched_images', blob), ('batched_point_coords', points),
                            ('batched_point_labels', labels)):
            net.setInput(value, name)
        output_masks, _ = net.forward(['output_masks', 'iou_predictions'])
        masks.append(output_masks[0, 0, 0] >= 0)
    seconds = time.perf_counter() - start
    predictor = EfficientSamPredictor(model)
    predictor.set_image(resized)
    expected = [best_mask(predictor, kind, (np.array(prompt, np.float32).reshape(-1, 2) * scale).reshape(-1).tolist())
                for kind, prompt in PROMPTS]
    agree(f'opencv {cv2.__version__}', expected, masks, seconds)


@pytest.mark.parametrize('output_mode', ['binary_mask', 'coco_rle'])
def test_supervision_reads_the_everything_records(output_mode, reference, image, tmp_path):
    """supervision's ``Detections.from_sam`` on the generator's records (bool masks or COCO RLE), and
    an overlay drawn by supervision's own ``MaskAnnotator``."""
    require('supervision')
    import supervision as sv

    from efficientsam_plugins.automatic_mask_generator import AutomaticMaskGenerator
    if output_mode == 'coco_rle':
        pytest.importorskip('pycocotools', reason="coco_rle records need pycocotools (the 'mm' extra)")
    generator = AutomaticMaskGenerator(reference, points_per_side=4, pred_iou_thresh=0.0,
                                       stability_score_thresh=0.0, output_mode=output_mode)
    records = generator.generate(image)
    assert records, 'the generator found nothing: the test would be void'
    detections = sv.Detections.from_sam(records)
    order = sorted(range(len(records)), key=lambda i: records[i]['area'], reverse=True)
    binary = AutomaticMaskGenerator(reference, points_per_side=4, pred_iou_thresh=0.0,
                                    stability_score_thresh=0.0).generate(image)
    expected = np.stack([binary[i]['segmentation'] for i in order])
    assert detections.mask.shape == expected.shape and (detections.mask == expected).all()
    xywh = np.array([records[i]['bbox'] for i in order], np.float64)
    np.testing.assert_allclose(detections.xyxy, np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
    np.testing.assert_array_equal(detections.area, [records[i]['area'] for i in order])
    annotator = sv.MaskAnnotator(opacity=0.5, color_lookup=sv.ColorLookup.INDEX)
    scene = annotator.annotate(scene=image.copy(), detections=detections)
    path = tmp_path / f'supervision_{output_mode}.png'
    Image.fromarray(scene).save(path)
    written = np.array(Image.open(path))
    covered = detections.mask.any(0)
    assert (written[covered] != image[covered]).any(axis=-1).mean() > 0.5
    assert (written[~covered] == image[~covered]).all()


def test_squeeze_sam_refuses_client_contracts(tmp_path):
    """SqueezeSAM has no image-only encoder: the SAM and official contracts are refused before any file."""
    squeeze = build_squeeze_sam(tiny_config(os.path.join(TEST_DATA, 'squeezesam_tiny')))
    for contract in ('sam', 'efficientsam', 'opencv'):
        with pytest.raises(ValueError, match='SqueezeSAM cannot be exported'):
            export_onnx(squeeze, str(tmp_path / contract), contract=contract)
    assert os.listdir(tmp_path) == []
