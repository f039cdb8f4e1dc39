"""The one conversion module: CLI, zoo:// in mmengine, round trips between layouts."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.convert import (
    load_vit_checkpoint,
    to_backbone_checkpoint,
    to_official_efficientsam,
    vit_backbone_weights,
)
from efficientsam_plugins.modeling.vit import ViT

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


@pytest.fixture(scope='module')
def official(official_vitt_checkpoint):
    return torch.load(official_vitt_checkpoint, weights_only=True)


def test_backbone_targets(official):
    weights = vit_backbone_weights(official)
    assert 'pos_embed' in weights and not any(k.startswith('neck.') for k in weights)
    assert len(weights) == 2 + 1 + 12 * 12
    for target, key, prefix in [('mmdet', 'state_dict', 'backbone.'), ('detectron2', 'model', 'backbone.net.'),
                                ('vit', 'state_dict', '')]:
        converted = to_backbone_checkpoint(official, target)
        assert set(converted[key]) == {prefix + k for k in weights}
        model = ViT('ti', img_size=256, window_size=14, global_attn_indexes=(2, 5, 8, 11), use_rel_pos=True)
        assert len(load_vit_checkpoint(model, converted)) == 24  # rel-pos tables stay initialised
        torch.testing.assert_close(model.blocks[7].mlp.fc1.bias,
                                   official['model']['image_encoder.blocks.7.mlp.fc1.bias'])
    with pytest.raises(ValueError, match='unknown target'):
        to_backbone_checkpoint(official, 'keras')


def test_official_layout_round_trip(official):
    wrapped = {'state_dict': {f'model.{k}': v for k, v in official['model'].items()}, 'meta': {}}
    restored = to_official_efficientsam(wrapped)
    assert set(restored['model']) == set(official['model'])
    build_efficient_sam('ti', restored)
    with pytest.raises(ValueError, match='not an EfficientSAM checkpoint'):
        to_official_efficientsam(to_backbone_checkpoint(official, 'mmdet'))


def test_cli_writes_atomically(tmp_path, official_vitt_checkpoint):
    script = os.path.join(REPO_ROOT, 'tools', 'convert_checkpoint.py')
    source = official_vitt_checkpoint
    out = tmp_path / 'vitt_d2.pth'
    result = subprocess.run([sys.executable, script, 'backbone', source, str(out), '--target', 'detectron2'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert all(k.startswith('backbone.net.') for k in torch.load(out, weights_only=True)['model'])
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'garbage')
    result = subprocess.run([sys.executable, script, 'official', str(bad), str(tmp_path / 'x.pt')],
                            capture_output=True, text=True)
    assert result.returncode == 1 and 'cannot read checkpoint' in result.stderr
    assert sorted(os.listdir(tmp_path)) == ['bad.pt', 'vitt_d2.pth']


def test_cli_official_verifies_against_the_named_model(tmp_path, official_vitt_checkpoint, capsys):
    script = os.path.join(REPO_ROOT, 'tools', 'convert_checkpoint.py')
    spec = importlib.util.spec_from_file_location('convert_tool', script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'vitt.pt'
    assert tool.main(['official', official_vitt_checkpoint, str(out), '--model', 'ti']) == 0
    assert 'verified against the config' in capsys.readouterr().out
    assert json.loads((tmp_path / 'vitt.config.json').read_text())['embed_dim'] == 192
    for model, error in (('s', 'does not match'), ('squeezesam', "official layout is EfficientSAM's"),
                         ('vit_h', "unknown model 'vit_h'")):
        with pytest.raises(ValueError, match=error):
            tool.main(['official', official_vitt_checkpoint, str(tmp_path / 'x.pt'), '--model', model])
    assert sorted(os.listdir(tmp_path)) == ['vitt.config.json', 'vitt.pt']


def test_mmengine_zoo_scheme(tmp_path, monkeypatch, official_vitt_checkpoint):
    pytest.importorskip('mmengine', reason='mmengine is not installed')
    from mmengine.runner import load_checkpoint

    import efficientsam_plugins.openmmlab.checkpoints  # noqa: F401  (registers zoo://)
    path = official_vitt_checkpoint
    manifest = tmp_path / 'zoo.json'
    manifest.write_text(json.dumps([dict(name='local_vitt', filename='local_vitt.pt', urls=['file://' + path],
                                         size=None, sha256=None, license='test', description='random ViT-T',
                                         arch={'family': 'efficientsam', 'config': 'ti'})]))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(manifest))
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))
    model = ViT('ti')
    load_checkpoint(model, 'zoo://local_vitt', strict=True)
    official = torch.load(path, weights_only=True)['model']
    torch.testing.assert_close(model.blocks[3].attn.proj.weight, official['image_encoder.blocks.3.attn.proj.weight'])
