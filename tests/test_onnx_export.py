"""ONNX export (tools/export_onnx.py, efficientsam_plugins.deploy): the default export keeps the official
EfficientSAM contract exactly, the exported tiny models agree with PyTorch through the raw graphs and
through the onnxruntime predictor, every prompt axis is dynamic, int8 graphs stay close, bad input ends
in one clear error before any file, and folders are replaced atomically and checked on loading (a
killed export leaves the previous folder; a graph from another export or a malformed export.json is
refused by name)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EFFICIENTSAM_TINY, REPO_ROOT, TEST_DATA
from PIL import Image

ort = pytest.importorskip('onnxruntime', reason="onnxruntime is not installed: pip install "
                          "'efficientsam_plugins[export]' to test the ONNX export")
onnx = pytest.importorskip('onnx', reason="onnx is not installed: pip install 'efficientsam_plugins[export]'")

from efficientsam_plugins.build import build_efficient_sam  # noqa: E402
from efficientsam_plugins.cli import run_tool  # noqa: E402
from efficientsam_plugins.deploy import check_export, load_onnx_predictor, read_manifest  # noqa: E402
from efficientsam_plugins.deploy import export_onnx as export_onnx_graphs  # noqa: E402
from efficientsam_plugins.predictor import EfficientSamPredictor  # noqa: E402

sys.path.insert(0, os.path.join(REPO_ROOT, 'tools'))
import export_onnx as export_tool  # noqa: E402

SQUEEZESAM_TINY = os.path.join(TEST_DATA, 'squeezesam_tiny')
DECODER_INPUTS = ['image_embeddings', 'batched_point_coords', 'batched_point_labels', 'orig_im_size']
OFFICIAL_OUTPUTS = ['output_masks', 'iou_predictions', 'low_res_masks']  # onnx_models.py's three, in order
HEADS_OUTPUTS = ['low_res_logits', 'iou_predictions', 'single_mask_low_res_logits', 'single_mask_iou_predictions']


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
def tiny_json(tmp_path_factory):
    """The tiny architecture as a config file, the way --model takes one."""
    path = tmp_path_factory.mktemp('config') / 'tiny.json'
    path.write_text(json.dumps(tiny_config(EFFICIENTSAM_TINY)))
    return str(path)


def tool_argv(tiny_json, out, *extra):
    return ['--model', tiny_json, '--checkpoint', os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'), '--out', out,
            *extra]


@pytest.fixture(scope='module')
def exported(tmp_path_factory, tiny_json):
    """The tiny EfficientSAM exported by the tool, fp32 and int8."""
    out = str(tmp_path_factory.mktemp('onnx') / 'tiny')
    assert export_tool.main(tool_argv(tiny_json, out, '--quantize', 'int8')) == 0
    return out


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


# (queries, points per query): one query of two clicks; five queries of a box and three clicks
# (five points); eight clicks, more than the decoder's six, which the graph cuts as the model does.
PROMPT_SHAPES = [(1, 2), (5, 5), (3, 8)]


def sorted_by_iou(masks, iou):
    order = torch.sort(iou, dim=-1, descending=True, stable=True).indices
    return torch.take_along_dim(masks, order[..., None, None], -3), torch.take_along_dim(iou, order, -1)


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
        sorted_low, sorted_iou = sorted_by_iou(low, iou)
        full = F.interpolate(sorted_low[0], (h, w), mode='bicubic')
    onnx_embeddings, = session(os.path.join(exported, 'encoder.onnx')).run(None, {'batched_images': pixels.numpy()})
    assert relative_l2(onnx_embeddings, embeddings) <= 1e-4
    feed = {'image_embeddings': onnx_embeddings, 'batched_point_coords': coords, 'batched_point_labels': labels,
            'orig_im_size': np.array([h, w], np.int64)}
    heads = dict(zip(HEADS_OUTPUTS, session(os.path.join(exported, 'decoder_heads.onnx')).run(HEADS_OUTPUTS, feed)))
    assert relative_l2(heads['low_res_logits'], low) <= 1e-4
    assert relative_l2(heads['iou_predictions'], iou) <= 1e-4
    assert relative_l2(heads['single_mask_low_res_logits'], single) <= 1e-4
    assert relative_l2(heads['single_mask_iou_predictions'], single_iou) <= 1e-4
    official = session(os.path.join(exported, 'decoder.onnx')).run(None, feed)  # as osam calls it
    assert len(official) == 3
    output_masks, iou_predictions, low_res_masks = official
    assert output_masks.shape == (1, queries, 3, h, w) and iou_predictions.shape == (1, queries, 3)
    assert low_res_masks.shape == (queries, 3, *low.shape[-2:])  # official: [B*Q, 3, 4h, 4w]
    assert (np.diff(iou_predictions, axis=-1) <= 0).all(), 'candidates must come in descending predicted IoU'
    assert relative_l2(iou_predictions, sorted_iou) <= 1e-4
    assert relative_l2(low_res_masks, sorted_low[0]) <= 1e-4
    assert ((output_masks[0] >= 0) == (full.numpy() >= 0)).mean() >= 0.999


def test_graph_contract(exported):
    """The official contract exactly: names, dtypes, output count and order; batch, query and point
    axes all symbolic (dynamic)."""
    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    def dtypes(values):
        return [onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in values]
    decoder = onnx.load(os.path.join(exported, 'decoder.onnx')).graph
    assert [v.name for v in decoder.input] == DECODER_INPUTS
    assert dtypes(decoder.input) == ['FLOAT', 'FLOAT', 'FLOAT', 'INT64']
    assert [v.name for v in decoder.output] == OFFICIAL_OUTPUTS
    assert dims(decoder.input[1]) == ['batch', 'num_queries', 'num_points', 2]
    assert dims(decoder.input[2]) == ['batch', 'num_queries', 'num_points']
    assert dims(decoder.input[3]) == [2]
    assert dims(decoder.output[0])[:2] == ['batch', 'num_queries']
    encoder = onnx.load(os.path.join(exported, 'encoder.onnx')).graph
    assert [v.name for v in encoder.input] == ['batched_images'] and dtypes(encoder.input) == ['FLOAT']
    assert dims(encoder.input[0]) == ['batch', 3, 'height', 'width']
    assert [v.name for v in encoder.output] == ['image_embeddings']
    heads = onnx.load(os.path.join(exported, 'decoder_heads.onnx')).graph
    assert [v.name for v in heads.input] == DECODER_INPUTS and [v.name for v in heads.output] == HEADS_OUTPUTS


def test_sam_contract_graphs(efficientsam, tmp_path):
    """--contract sam: SAM's decoder inputs (mask_input / has_mask_input declared, ignored) and
    outputs, the tools' YAML beside them; the project's predictor refuses the folder by name."""
    manifest = export_onnx_graphs(efficientsam, str(tmp_path / 'sam'), contract='sam')
    decoder = onnx.load(str(tmp_path / 'sam' / manifest['graphs']['decoder'])).graph
    assert [v.name for v in decoder.input] == ['image_embeddings', 'point_coords', 'point_labels', 'mask_input',
                                               'has_mask_input', 'orig_im_size']
    assert [v.name for v in decoder.output] == ['masks', 'iou_predictions', 'low_res_masks']
    encoder = onnx.load(str(tmp_path / 'sam' / manifest['graphs']['encoder'])).graph
    assert [v.name for v in encoder.input] == ['input_image']
    yaml = (tmp_path / 'sam' / manifest['tool_config']).read_text()
    assert 'type: "segment_anything"' in yaml and 'encoder_model_path: "sam_encoder.onnx"' in yaml
    with pytest.raises(ValueError, match="'sam'-contract graphs for AnyLabeling"):
        load_onnx_predictor(str(tmp_path / 'sam'))


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
    manifest = export_onnx_graphs(model, str(tmp_path))
    assert manifest['graphs'] == {'model': 'squeeze_sam.onnx'} and manifest['contract'] == 'squeezesam'
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
    assert run_tool(export_tool.main, argv) == 1
    return capsys.readouterr().err


def test_tool_bad_inputs(tmp_path, capsys, tiny_json):
    """Each refusal is one `error:` line, before any weights are loaded or any file is written."""
    a_file = tmp_path / 'file.txt'
    a_file.write_text('x')
    out = str(tmp_path / 'out')
    assert 'is a file, not a folder' in tool_error(tool_argv(tiny_json, str(a_file)), capsys)
    assert 'opset 12 is too low' in tool_error(tool_argv(tiny_json, out, '--opset', '12'), capsys)
    assert "SqueezeSAM cannot be exported to the 'sam' contract" in tool_error(
        ['--model', 'squeezesam', '--contract', 'sam', '--out', out], capsys)
    assert "EfficientSAM exports to the" in tool_error(tool_argv(tiny_json, out, '--contract', 'squeezesam'), capsys)
    assert "'opencv' contract has no int8 form" in tool_error(
        tool_argv(tiny_json, out, '--contract', 'opencv', '--quantize', 'int8'), capsys)
    bad_json = tmp_path / 'bad.json'
    bad_json.write_text('{"img_size": ')
    assert 'not valid JSON' in tool_error(['--model', str(bad_json), '--out', out], capsys)
    typo = tmp_path / 'typo.json'
    typo.write_text('{"depht": 2}')
    assert 'unknown EfficientSAM config keys' in tool_error(['--model', str(typo), '--out', out], capsys)
    assert 'unknown model' in tool_error(['--model', 'vit_h', '--out', out], capsys)
    assert 'missing.pt' in tool_error(['--model', tiny_json, '--checkpoint', str(tmp_path / 'missing.pt'),
                                       '--out', out], capsys)
    user_folder = tmp_path / 'photos'
    user_folder.mkdir()
    (user_folder / 'keep.jpg').write_text('x')
    assert 'is not an ONNX export folder' in tool_error(tool_argv(tiny_json, str(user_folder)), capsys)
    with pytest.raises(SystemExit):  # argparse's usage error
        export_tool.main(['--model', tiny_json, '--checkpoint', 'x.pt', '--random-weights', '--out', out])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.json', 'file.txt', 'photos', 'typo.json']
    assert [p.name for p in user_folder.iterdir()] == ['keep.jpg']


def test_random_weights_are_said_plainly(tmp_path, capsys, tiny_json):
    out = tmp_path / 'random'
    assert run_tool(export_tool.main, ['--model', tiny_json, '--out', str(out), '--contract', 'sam']) == 0
    assert 'RANDOM weights' in capsys.readouterr().err
    manifest = read_manifest(str(out))
    assert manifest['random_weights'] is True
    assert 'RANDOM WEIGHTS' in (out / manifest['tool_config']).read_text()


def test_loading_bad_export_folders(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match='not an ONNX export folder'):
        load_onnx_predictor(str(tmp_path))
    manifest = json.loads((open(os.path.join(exported, 'export.json')).read()))
    (tmp_path / 'export.json').write_text(json.dumps({**manifest, 'int8_graphs': {}}))
    with pytest.raises(ValueError, match='no int8 graphs'):
        load_onnx_predictor(str(tmp_path), int8=True)
    with pytest.raises(FileNotFoundError, match='incomplete: missing'):
        load_onnx_predictor(str(tmp_path))


@pytest.mark.parametrize('edit', [
    lambda m: [m],
    lambda m: {k: v for k, v in m.items() if k != 'graphs'},
    lambda m: {**m, 'graphs': ['encoder.onnx']},
    lambda m: {**m, 'graphs': {'encoder': 'encoder.onnx'}},
    lambda m: {**m, 'graphs': {**m['graphs'], 'encoder': '../encoder.onnx'}},
    lambda m: {**m, 'sha256': None},
    lambda m: {**m, 'model': 'vit_h'},
    lambda m: {**m, 'contract': 7},
    lambda m: {**m, 'format': 1},
    lambda m: {**m, 'max_points_per_query': 'six'},
    lambda m: {**m, 'architecture': {}},
], ids=['list', 'no-graphs', 'graphs-list', 'graph-missing', 'graph-outside', 'sha256-null', 'unknown-model',
        'contract-number', 'old-format', 'points-string', 'no-architecture'])
def test_malformed_manifest_is_one_clear_error(exported, tmp_path, edit):
    """No KeyError / TypeError / onnxruntime traceback: one error naming export.json."""
    folder = tmp_path / 'copy'
    folder.mkdir()
    for name in os.listdir(exported):
        if name != 'export.json':
            os.link(os.path.join(exported, name), folder / name)
    manifest = json.loads(open(os.path.join(exported, 'export.json')).read())
    (folder / 'export.json').write_text(json.dumps(edit(manifest)))
    with pytest.raises(ValueError, match=f'{folder / "export.json"} is malformed'):
        load_onnx_predictor(str(folder))


def test_graph_from_another_export_is_refused(exported, efficientsam, tmp_path):
    """An encoder copied in from another export (same file name, other weights) is named, not run."""
    other = tmp_path / 'other'
    torch.manual_seed(0)
    changed = build_efficient_sam(tiny_config(EFFICIENTSAM_TINY))  # the same architecture, other weights
    export_onnx_graphs(changed, str(other))
    folder = tmp_path / 'mixed'
    folder.mkdir()
    for name in os.listdir(exported):
        os.link(os.path.join(exported, name), folder / name)
    os.remove(folder / 'encoder.onnx')
    os.link(other / 'encoder.onnx', folder / 'encoder.onnx')
    with pytest.raises(ValueError, match=r'encoder\.onnx does not match .*export\.json.*another export'):
        load_onnx_predictor(str(folder))
    with pytest.raises(ValueError, match='another export'):
        check_export(str(folder))


def test_killed_export_leaves_the_previous_folder(tmp_path, tiny_json):
    """A re-export killed between its graphs (SIGKILL when the first graph appears in the staging
    folder) leaves the previous export intact and loadable; the next export removes the leftover."""
    out = tmp_path / 'export'
    previous = export_onnx_graphs(build_efficient_sam(tiny_config(EFFICIENTSAM_TINY)), str(out))
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'tools', 'export_onnx.py'),
                                *tool_argv(tiny_json, str(out))], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = tmp_path / f'.export.{process.pid}.tmp'
    deadline = time.monotonic() + 240
    while not (staged / 'encoder.onnx').exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, 'the export ended before its first graph appeared'
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (staged / 'decoder_heads.onnx').exists(), 'killed too late: every graph was written'
    assert staged.is_dir()  # what a kill leaves
    manifest, _ = check_export(str(out))
    assert manifest['export_id'] == previous['export_id']
    load_onnx_predictor(str(out))
    fresh = export_onnx_graphs(build_efficient_sam(tiny_config(EFFICIENTSAM_TINY)), str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export']
    assert check_export(str(out))[0]['export_id'] == fresh['export_id'] != previous['export_id']


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
