"""ONNX export (tools/export_onnx.py, efficientsam_plugins.deploy): the exported tiny models agree
with PyTorch through the raw graphs and through the onnxruntime predictor, every prompt axis is
dynamic, int8 graphs stay close, and bad input ends in one clear error."""
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EFFICIENTSAM_TINY, REPO_ROOT, TEST_DATA
from PIL import Image

ort = pytest.importorskip('onnxruntime', reason="onnxruntime is not installed: pip install "
                          "'efficientsam_plugins[export]' to test the ONNX export")
onnx = pytest.importorskip('onnx', reason="onnx is not installed: pip install 'efficientsam_plugins[export]'")

from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.cli import run_tool  # noqa: E402
from efficientsam_plugins.deploy import export_squeeze_sam, load_onnx_predictor  # noqa: E402
from efficientsam_plugins.predictor import EfficientSamPredictor  # noqa: E402

sys.path.insert(0, os.path.join(REPO_ROOT, 'tools'))
import export_onnx  # noqa: E402

SQUEEZESAM_TINY = os.path.join(TEST_DATA, 'squeezesam_tiny')
DECODER_INPUTS = ['image_embeddings', 'batched_point_coords', 'batched_point_labels', 'orig_im_size']
DECODER_OUTPUTS = ['output_masks', 'iou_predictions', 'low_res_logits', 'single_mask_low_res_logits',
                   'single_mask_iou_predictions']


def relative_l2(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def tiny_config(name):
    with open(os.path.join(name, 'reference.json')) as f:
        return json.load(f)['config']


@pytest.fixture(scope='module')
def image():
    return np.array(Image.open(os.path.join(EFFICIENTSAM_TINY, 'dogs.png')).convert('RGB'))


@pytest.fixture(scope='module')
def efficientsam():
    return build_efficient_sam(tiny_config(EFFICIENTSAM_TINY), os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """The tiny EfficientSAM exported by the tool, fp32 and int8."""
    out = str(tmp_path_factory.mktemp('onnx') / 'tiny')
    argv = ['--model', 'ti', '--config', json.dumps(tiny_config(EFFICIENTSAM_TINY)), '--out', out,
            '--checkpoint', os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'), '--quantize', 'int8']
    assert export_onnx.main(argv) == 0
    return out


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


# (queries, points per query): one query of two clicks; five queries of a box and three clicks
# (five points); eight clicks, more than the decoder's six, which the graph cuts as the model does.
PROMPT_SHAPES = [(1, 2), (5, 5), (3, 8)]


@pytest.mark.parametrize('queries,points', PROMPT_SHAPES)
def test_graphs_equal_pytorch(exported, efficientsam, image, queries, points):
    image = np.ascontiguousarray(image[::3, ::3])  # onnxruntime's bicubic output_masks are slow to compute
    rng = np.random.default_rng(queries)
    h, w = image.shape[:2]
    coords = (rng.random((1, queries, points, 2)) * [w, h]).astype(np.float32)
    labels = np.ones((1, queries, points), np.float32)
    labels[:, 1::2, :2] = [2, 3]  # every other query starts with a box
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        embeddings = efficientsam.get_image_embeddings(pixels)
        low, iou = efficientsam.predict_masks(embeddings, torch.from_numpy(coords), torch.from_numpy(labels),
                                              True, h, w)
        single, single_iou = efficientsam.predict_masks(embeddings, torch.from_numpy(coords),
                                                        torch.from_numpy(labels), False, h, w)
        full = F.interpolate(low[0], (h, w), mode='bicubic')
    onnx_embeddings, = session(os.path.join(exported, 'encoder.onnx')).run(None, {'batched_images': pixels.numpy()})
    assert relative_l2(onnx_embeddings, embeddings) <= 1e-4
    outputs = session(os.path.join(exported, 'decoder.onnx')).run(DECODER_OUTPUTS, {
        'image_embeddings': onnx_embeddings, 'batched_point_coords': coords, 'batched_point_labels': labels,
        'orig_im_size': np.array([h, w], np.int64)})
    out = dict(zip(DECODER_OUTPUTS, outputs))
    assert out['output_masks'].shape == (1, queries, 3, h, w)
    assert relative_l2(out['low_res_logits'], low) <= 1e-4
    assert relative_l2(out['iou_predictions'], iou) <= 1e-4
    assert relative_l2(out['single_mask_low_res_logits'], single) <= 1e-4
    assert relative_l2(out['single_mask_iou_predictions'], single_iou) <= 1e-4
    assert ((out['output_masks'][0] >= 0) == (full.numpy() >= 0)).mean() >= 0.999


def test_graph_contract(exported):
    """The official names, and symbolic (dynamic) batch, query and point axes."""
    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    decoder = onnx.load(os.path.join(exported, 'decoder.onnx')).graph
    assert [v.name for v in decoder.input] == DECODER_INPUTS
    assert [v.name for v in decoder.output] == DECODER_OUTPUTS
    assert dims(decoder.input[1]) == ['batch', 'num_queries', 'num_points', 2]
    assert dims(decoder.output[0])[:2] == ['batch', 'num_queries']
    encoder = onnx.load(os.path.join(exported, 'encoder.onnx')).graph
    assert [v.name for v in encoder.input] == ['batched_images']
    assert dims(encoder.input[0]) == ['batch', 3, 'height', 'width']
    assert [v.name for v in encoder.output] == ['image_embeddings']


@pytest.fixture(scope='module')
def predictors(exported, efficientsam, image):
    reference = EfficientSamPredictor(efficientsam)
    runtime = load_onnx_predictor(exported, num_threads=2)
    for predictor in (reference, runtime):
        predictor.set_image(image)
    return reference, runtime


@pytest.mark.parametrize('prompt', [
    dict(points=[[580, 350], [650, 350]]),
    dict(boxes=[[400, 200, 800, 600], [50, 100, 450, 590], [0, 0, 1072, 603], [10, 10, 60, 60], [500, 300, 520, 330]],
         points=[[[600, 400]], [[200, 300]], [[500, 300]], [[30, 30]], [[510, 310]]]),
    dict(points=[[580, 350]], multimask_output=False),
    dict(boxes=[[400, 200, 800, 600]] * 3, best_only=True),
], ids=['Q1-points', 'Q5-box+point', 'single-mask', 'best-only'])
def test_predictor_equals_pytorch(predictors, prompt):
    reference, runtime = predictors
    masks, iou, low = reference.predict(**prompt)
    onnx_masks, onnx_iou, onnx_low = runtime.predict(**prompt)
    assert onnx_masks.shape == masks.shape and onnx_low.shape == low.shape
    assert relative_l2(onnx_low, low) <= 1e-4
    assert relative_l2(onnx_iou, iou) <= 1e-4
    assert (onnx_masks == masks).mean() >= 0.999


def test_predictor_refuses_what_the_pytorch_one_refuses(predictors):
    _, runtime = predictors
    with pytest.raises(ValueError, match='at most 6'):
        runtime.predict(points=[[10, 10]] * 7)
    with pytest.raises(ValueError, match='outside'):
        runtime.predict(boxes=[0, 0, 2000, 100])
    with pytest.raises(ValueError, match='point labels'):
        runtime.predict(points=[[10, 10]], point_labels=[0])


def test_int8_graphs_stay_close(exported, predictors):
    reference, _ = predictors
    int8 = load_onnx_predictor(exported, int8=True, num_threads=2)
    int8.set_image(np.asarray(Image.open(os.path.join(EFFICIENTSAM_TINY, 'dogs.png')).convert('RGB')))
    boxes = [[400, 200, 800, 600], [50, 100, 450, 590], [600, 50, 1000, 500]]
    expected, _, _ = reference.predict(boxes=boxes, best_only=True)
    masks, _, _ = int8.predict(boxes=boxes, best_only=True)
    ious = (masks & expected).sum((1, 2, 3)) / np.maximum((masks | expected).sum((1, 2, 3)), 1)
    assert ious.mean() >= 0.95


def test_squeeze_sam_graph_equals_pytorch(tmp_path, image):
    from efficientsam_plugins.build import build_squeeze_sam
    from efficientsam_plugins.predictor import SqueezeSamPredictor
    model = build_squeeze_sam(tiny_config(SQUEEZESAM_TINY), os.path.join(SQUEEZESAM_TINY, 'state_dict.pt'))
    manifest = export_squeeze_sam(model, str(tmp_path))
    assert manifest['graphs'] == {'model': 'squeeze_sam.onnx'}
    reference, runtime = SqueezeSamPredictor(model), load_onnx_predictor(str(tmp_path), num_threads=2)
    for predictor in (reference, runtime):
        predictor.set_image(image)
    for prompt in (dict(points=[[580, 350], [650, 350]]),
                   dict(boxes=[[400, 200, 800, 600], [50, 100, 450, 590], [0, 0, 1072, 603], [10, 10, 60, 60],
                               [500, 300, 520, 330]], points=[[[600, 400]]] * 5),
                   dict(points=[[580, 350]], multimask_output=False)):
        masks, iou, low = reference.predict(**prompt)
        onnx_masks, onnx_iou, onnx_low = runtime.predict(**prompt)
        assert relative_l2(onnx_low, low) <= 1e-4 and relative_l2(onnx_iou, iou) <= 1e-4
        assert (onnx_masks == masks).mean() >= 0.999


def tool_error(argv, capsys):
    assert run_tool(export_onnx.main, argv) == 1
    return capsys.readouterr().err


def test_tool_bad_inputs(tmp_path, capsys):
    a_file = tmp_path / 'file.txt'
    a_file.write_text('x')
    tiny = ['--model', 'ti', '--config', json.dumps(tiny_config(EFFICIENTSAM_TINY))]
    assert 'is a file, not a folder' in tool_error(tiny + ['--random-weights', '--out', str(a_file)], capsys)
    assert '--opset 12 is not supported' in tool_error(tiny + ['--random-weights', '--out', str(tmp_path),
                                                                '--opset', '12'], capsys)
    assert 'must be a JSON object' in tool_error(['--model', 'ti', '--config', 's', '--random-weights',
                                                  '--out', str(tmp_path)], capsys)
    assert 'not valid JSON' in tool_error(['--model', 'ti', '--config', '{"img_size": ', '--random-weights',
                                           '--out', str(tmp_path)], capsys)
    assert 'unknown EfficientSAM config keys' in tool_error(
        ['--model', 'ti', '--config', '{"depht": 2}', '--random-weights', '--out', str(tmp_path)], capsys)
    assert 'never published' in tool_error(['--model', 'squeezesam', '--out', str(tmp_path)], capsys)
    assert 'missing.pt' in tool_error(tiny + ['--checkpoint', str(tmp_path / 'missing.pt'),
                                              '--out', str(tmp_path)], capsys)
    with pytest.raises(SystemExit):  # argparse's usage error
        export_onnx.main(tiny + ['--checkpoint', 'x.pt', '--random-weights', '--out', str(tmp_path)])
    assert not any(p.suffix == '.onnx' for p in tmp_path.iterdir())


def test_loading_bad_export_folders(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match='not an ONNX export folder'):
        load_onnx_predictor(str(tmp_path))
    manifest = json.loads((open(os.path.join(exported, 'export.json')).read()))
    (tmp_path / 'export.json').write_text(json.dumps({**manifest, 'int8_graphs': {}}))
    with pytest.raises(ValueError, match='no int8 graphs'):
        load_onnx_predictor(str(tmp_path), int8=True)
    with pytest.raises(FileNotFoundError, match='incomplete: missing'):
        load_onnx_predictor(str(tmp_path))


def test_missing_onnxruntime_names_the_extra(monkeypatch, exported):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # makes `import onnxruntime` fail
    with pytest.raises(ImportError, match=r"efficientsam_plugins\[export\]"):
        load_onnx_predictor(exported)


def test_tools_run_on_the_exported_graphs(exported, tmp_path, capsys):
    """``--onnx DIR`` makes the demo (and every tool sharing its model options) run onnxruntime."""
    import demo
    output = tmp_path / 'overlay.png'
    assert run_tool(demo.main, ['--onnx', exported, '--output', str(output)]) == 0
    assert output.is_file() and 'RANDOM' not in capsys.readouterr().err
    assert run_tool(demo.main, ['--onnx', exported, '--random-weights', '--output', str(output)]) == 1
    assert '--checkpoint/--random-weights do not apply' in capsys.readouterr().err
