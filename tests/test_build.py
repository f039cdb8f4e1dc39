"""The one model registry (``efficientsam_plugins.build``): every kind of model name, the predictor
builder's backends, the purity of ``modeling`` and the README's examples of the public entry points."""
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import EFFICIENTSAM_TINY, REPO_ROOT, TEST_DATA

from efficientsam_plugins import build_model, build_predictor, list_models, resolve_model
from efficientsam_plugins.build import ModelSpec
from efficientsam_plugins.modeling.efficient_sam import EfficientSam
from efficientsam_plugins.modeling.squeeze_sam import SqueezeSam
from efficientsam_plugins.predictor import EfficientSamPredictor, SqueezeSamPredictor
from efficientsam_plugins.zoo import ZooError

SQUEEZESAM_TINY = os.path.join(TEST_DATA, 'squeezesam_tiny')
BUILT_IN = ['ti', 's', 'squeezesam', 'efficientsam_s', 'efficientsam_ti']


def reference_config(folder: str) -> dict:
    with open(os.path.join(folder, 'reference.json')) as f:
        return json.load(f)['config']


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """No network and an empty zoo cache: a name that needs a download fails instead."""
    monkeypatch.setenv('EFFICIENTSAM_OFFLINE', '1')
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'zoo_cache'))
    monkeypatch.delenv('EFFICIENTSAM_ZOO_MANIFEST', raising=False)


def test_architecture_and_zoo_names_resolve_without_loading_anything(offline):
    assert list_models() == BUILT_IN
    assert resolve_model('ti') == ModelSpec('ti', 'efficientsam', 'ti')
    assert resolve_model('s') == ModelSpec('s', 'efficientsam', 's')
    assert resolve_model('squeezesam') == ModelSpec('squeezesam', 'squeezesam', 'base')
    assert resolve_model('efficientsam_ti') == ModelSpec('efficientsam_ti', 'efficientsam', 'ti', 'zoo://efficientsam_ti')
    assert resolve_model('zoo://efficientsam_s') == resolve_model('efficientsam_s')
    assert resolve_model('ti').released_file == 'efficient_sam_vitt.pt'
    assert resolve_model({'img_size': 256}).released_file == 'CHECKPOINT'


def test_architecture_names_build_random_weights(offline):
    model = build_model('ti')
    assert isinstance(model, EfficientSam) and not model.training
    assert model.image_encoder.patch_embed.proj.out_channels == 192
    squeeze = build_model('squeezesam')
    assert isinstance(squeeze, SqueezeSam) and squeeze.img_size == 512 and not squeeze.training


def test_zoo_names_download_unless_not_pretrained(offline):
    with pytest.raises(ZooError, match='efficientsam_ti'):  # offline with an empty cache
        build_model('efficientsam_ti')
    model = build_model('efficientsam_s', pretrained=False)  # the architecture alone: no download
    assert isinstance(model, EfficientSam) and model.image_encoder.patch_embed.proj.out_channels == 384


def test_user_manifest_entries_are_model_names(official_vitt_checkpoint, tmp_path, monkeypatch):
    manifest = tmp_path / 'manifest.json'
    manifest.write_text(json.dumps([
        {'name': 'my_vitt', 'filename': 'my_vitt.pt', 'urls': [f'file://{official_vitt_checkpoint}'],
         'arch': {'family': 'efficientsam', 'config': 'ti'}},
        {'name': 'my_squeezesam', 'filename': 'squeeze_sam.pt', 'urls': ['file:///nowhere/squeeze_sam.pt'],
         'arch': {'family': 'squeezesam'}},  # SqueezeSAM has one architecture: the family names it
        {'name': 'my_efficientsam', 'filename': 'e.pt', 'urls': ['file:///nowhere/e.pt'],
         'arch': {'family': 'efficientsam'}},  # which EfficientSAM is unknown: not a model name
        {'name': 'my_sam', 'filename': 'sam.pt', 'urls': ['file:///nowhere/sam.pt'],
         'arch': {'family': 'sam', 'config': 'vit_b'}}]))  # another family: a checkpoint, not a model
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(manifest))
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))
    assert list_models() == BUILT_IN[:3] + ['efficientsam_s', 'efficientsam_ti', 'my_squeezesam', 'my_vitt']
    assert resolve_model('my_squeezesam') == ModelSpec('my_squeezesam', 'squeezesam', 'base', 'zoo://my_squeezesam')
    model = build_model('my_vitt')
    expected = torch.load(official_vitt_checkpoint, weights_only=True)['model']
    torch.testing.assert_close(model.state_dict(), expected)
    for name in ('my_efficientsam', 'my_sam'):
        with pytest.raises(ValueError, match=f"unknown model '{name}'"):
            resolve_model(name)


def test_config_dicts_and_json_files(tmp_path):
    tiny = reference_config(EFFICIENTSAM_TINY)
    model = build_model(tiny, os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'))
    assert isinstance(model, EfficientSam) and model.img_size == tiny['img_size']
    squeeze = reference_config(SQUEEZESAM_TINY)
    assert resolve_model(squeeze).family == 'squeezesam'  # recognised by SqueezeSAM's own keys
    assert resolve_model({'family': 'squeezesam'}) == ModelSpec('config', 'squeezesam', {})
    path = tmp_path / 'squeezesam_tiny.config.json'  # as a training run writes it beside its weights
    path.write_text(json.dumps(squeeze))
    model = build_model(str(path), os.path.join(SQUEEZESAM_TINY, 'state_dict.pt'))
    assert isinstance(model, SqueezeSam) and model.img_size == squeeze['encoder_image_size']
    assert resolve_model(path) == ModelSpec(str(path), 'squeezesam', squeeze)  # os.PathLike too


@pytest.mark.parametrize('name,error,match', [
    ('vit_h', ValueError, "unknown model 'vit_h': expected one of ti, s, squeezesam, efficientsam_s, "
                          r'efficientsam_ti, or a config \.json/\.py file'),
    ('{missing}.json', FileNotFoundError, 'model config file not found'),
    ('{missing}.py', FileNotFoundError, 'model config file not found'),
    ('{broken}', ValueError, 'is not valid JSON'),
    ('{list}', ValueError, 'must hold a JSON object of architecture settings, got a list'),
    ({'family': 'sam'}, ValueError, '"family" must be one of efficientsam, squeezesam'),
    ({'depth': 0}, ValueError, 'EfficientSAM config depth must be a positive integer'),
    ({'encoder_image_size': 128, 'img_size': 128}, ValueError, r"unknown SqueezeSAM config keys \['img_size'\]"),
])
def test_bad_names_raise_one_clear_error(name, error, match, tmp_path, offline):
    (tmp_path / 'broken.json').write_text('{"depth": ')
    (tmp_path / 'list.json').write_text('[1, 2]')
    if isinstance(name, str):
        name = name.format(missing=tmp_path / 'missing', broken=tmp_path / 'broken.json', list=tmp_path / 'list.json')
    with pytest.raises(error, match=match):
        build_model(name)


def test_training_config_names_its_model_config(tmp_path):
    pytest.importorskip('mmengine', reason='training configs are read with mmengine')
    config = tmp_path / 'finetune.py'
    config.write_text("model = dict(type='EfficientSamFinetuner', model_config='s')\n")
    assert resolve_model(str(config)) == ModelSpec(str(config), 'efficientsam', 's')
    config.write_text("model = dict(type='SqueezeSamTrainer', model_config=dict(negative_click_channel=True))\n")
    assert resolve_model(str(config)) == ModelSpec(str(config), 'squeezesam', {'negative_click_channel': True})


def test_build_predictor_picks_the_family_and_passes_its_options():
    tiny = reference_config(EFFICIENTSAM_TINY)
    predictor = build_predictor(tiny, os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'), precision='bf16',
                                max_queries_per_batch=5)
    assert type(predictor) is EfficientSamPredictor
    assert (predictor.precision, predictor.max_queries_per_batch) == ('bf16', 5)
    squeeze = build_predictor(reference_config(SQUEEZESAM_TINY), os.path.join(SQUEEZESAM_TINY, 'state_dict.pt'))
    assert type(squeeze) is SqueezeSamPredictor and squeeze.max_queries_per_batch == 8  # SqueezeSAM's default
    with pytest.raises(ValueError, match='precision must be one of'):
        build_predictor(tiny, precision='int4')


@pytest.mark.parametrize('kwargs,match', [
    (dict(checkpoint='weights.pt'), 'checkpoint, precision and device do not apply'),
    (dict(precision='bf16'), 'checkpoint, precision and device do not apply'),
    (dict(device='cuda'), 'checkpoint, precision and device do not apply'),
])
def test_onnx_backend_takes_no_torch_options(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        build_predictor(str(tmp_path), backend='onnx', **kwargs)


def test_onnx_backend_needs_an_export_folder(tmp_path):
    pytest.importorskip('onnxruntime')
    with pytest.raises((FileNotFoundError, ValueError), match=str(tmp_path)):
        build_predictor(str(tmp_path), backend='onnx')


def test_unknown_backend():
    with pytest.raises(ValueError, match='backend must be "torch" or "onnx", got \'tensorrt\''):
        build_predictor('ti', backend='tensorrt')


# Everything ``modeling`` may not load, by top-level module name (``mm*``: OpenMMLab; ``onnx*``).
NOT_IN_MODELING = ('tqdm', 'safetensors', 'torchvision', 'cv2', 'PIL', 'pycocotools', 'detectron2')
PURITY_PROBE = '''
import json, sys
import torch
before = set(sys.modules)
import efficientsam_plugins.modeling
import efficientsam_plugins.modeling.sami, efficientsam_plugins.modeling.squeeze_sam
print(json.dumps(sorted(set(sys.modules) - before)))
'''


def test_modeling_imports_torch_and_nothing_else():
    """In a fresh interpreter, after torch: only the package's (lazy) root and ``modeling`` itself."""
    proc = subprocess.run([sys.executable, '-c', PURITY_PROBE], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert 'efficientsam_plugins.modeling.efficient_sam' in loaded  # the probe did import it
    ours = [m for m in loaded if m.split('.')[0] == 'efficientsam_plugins']
    outside = [m for m in ours if m != 'efficientsam_plugins' and not m.startswith('efficientsam_plugins.modeling')]
    assert not outside, f'importing modeling loaded {outside}'
    roots = {m.split('.')[0] for m in loaded} - {'efficientsam_plugins'}
    forbidden = sorted(root for root in roots if root in NOT_IN_MODELING or (
        root.startswith(('mm', 'onnx')) and root not in sys.stdlib_module_names))
    assert not forbidden, f'importing modeling loaded {forbidden}'

