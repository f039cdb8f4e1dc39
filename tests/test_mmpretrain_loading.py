"""mmpretrain's SAMIViT loads init_cfg checkpoints strictly, through the converter the other toolboxes use."""
import os

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import efficientsam_plugins.openmmlab.mmpretrain  # noqa: E402,F401
from efficientsam_plugins.build import build_efficient_sam  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PRETRAIN_SMOKE = os.path.join(REPO, 'configs', 'sami', 'sami_vit-{}_sam-vit-h_in1k-400e_smoke.py')
FINETUNE_SMOKE = os.path.join(REPO, 'configs', 'imagenet', 'sami_vit-tiny_in1k-100e_smoke.py')


@pytest.fixture(scope='module')
def models():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    return MODELS


def save_sami_checkpoint(models, path, arch='tiny'):
    """A SAMI pretraining checkpoint of the smoke config (no teacher needed: cached mode)."""
    cfg = Config.fromfile(PRETRAIN_SMOKE.format(arch))
    cfg.model.teacher_mode = 'cached'
    sami = models.build(cfg.model)
    sami.init_weights()
    torch.save(dict(meta=dict(iter=20), state_dict=sami.state_dict()), path)
    return sami


def finetune_backbone(models, checkpoint, **init_cfg):
    """The finetune smoke config's backbone, loading ``checkpoint``."""
    cfg = Config.fromfile(FINETUNE_SMOKE)
    cfg.model.backbone.init_cfg.update(checkpoint=str(checkpoint), **init_cfg)
    return models.build(cfg.model.backbone)


def test_sami_checkpoint_loads_into_the_classifier(models, tmp_path):
    sami = save_sami_checkpoint(models, tmp_path / 'sami.pth')
    checkpoint = torch.load(tmp_path / 'sami.pth', weights_only=True)
    # A teacher saved by some other tool sits outside backbone.* and is skipped like the decoder.
    checkpoint['state_dict']['target_generator.image_encoder.patch_embed.proj.weight'] = torch.zeros(8, 3, 16, 16)
    torch.save(checkpoint, tmp_path / 'sami_with_teacher.pth')
    assert 'backbone.norm.weight' in checkpoint['state_dict']  # dropped: the classifier has fc_norm instead

    cfg = Config.fromfile(FINETUNE_SMOKE)
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'sami_with_teacher.pth')
    classifier = models.build(cfg.model)
    classifier.init_weights()
    loaded = classifier.backbone.state_dict()
    expected = {k: v for k, v in sami.backbone.state_dict().items() if not k.startswith('norm.')}
    assert set(loaded) == set(expected) | {'fc_norm.weight', 'fc_norm.bias'}
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert torch.equal(loaded['fc_norm.weight'], torch.ones(192))  # new: left at initialisation


def test_other_width_is_an_error_naming_the_keys(models, tmp_path):
    save_sami_checkpoint(models, tmp_path / 'sami_small.pth', arch='small')
    backbone = finetune_backbone(models, tmp_path / 'sami_small.pth')
    with pytest.raises(ValueError, match=r'192 dims and 12 blocks: shape mismatches \(pos_embed: checkpoint '
                                         r'\(1, 197, 384\) vs model \(1, 197, 192\); patch_embed\.proj\.weight'):
        backbone.init_weights()


def _save(path, state_dict):
    torch.save(dict(state_dict=state_dict), path)
    return path


@pytest.mark.parametrize('case', ['deeper', 'shallower', 'other_model', 'corrupt'])
def test_wrong_checkpoints_fail_loudly(models, tmp_path, case):
    from efficientsam_plugins.openmmlab.mmpretrain import SAMIViT

    def vit_checkpoint(depth):
        vit = SAMIViT(arch=dict(embed_dim=192, depth=depth, num_heads=3), img_size=64)
        return _save(tmp_path / f'{case}.pth', {f'backbone.{k}': v for k, v in vit.state_dict().items()})

    if case == 'deeper':
        path, message = vit_checkpoint(13), r'unexpected keys \(blocks\.12\.'
    elif case == 'shallower':
        path, message = vit_checkpoint(2), r'missing keys \(blocks\.2\.'
    elif case == 'other_model':
        resnet = {'backbone.conv1.weight': torch.zeros(64, 3, 7, 7), 'backbone.bn1.weight': torch.ones(64)}
        path, message = _save(tmp_path / 'resnet.pth', resnet), r'missing keys \(pos_embed, patch_embed'
    else:
        path, message = tmp_path / 'corrupt.pth', 'cannot read checkpoint .*corrupt'
        path.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match=message):
        finetune_backbone(models, path).init_weights()


def test_official_efficientsam_checkpoint_loads(models, tmp_path):
    torch.manual_seed(0)
    sam = build_efficient_sam('ti')  # the official layout: image_encoder.*, prompt_encoder.*, mask_decoder.*
    torch.save(dict(model=sam.state_dict()), tmp_path / 'efficient_sam_vitt.pt')

    with pytest.raises(ValueError, match=r'missing keys \(pos_embed, patch_embed'):  # not under backbone.*
        finetune_backbone(models, tmp_path / 'efficient_sam_vitt.pt').init_weights()
    backbone = finetune_backbone(models, tmp_path / 'efficient_sam_vitt.pt', prefix=None)
    backbone.init_weights()
    loaded = backbone.state_dict()
    official = {k: v for k, v in sam.image_encoder.state_dict().items() if not k.startswith('neck.')}
    assert set(loaded) == set(official) | {'fc_norm.weight', 'fc_norm.bias'}
    for key, value in official.items():
        assert torch.equal(loaded[key], value), key


def test_only_pretrained_init_cfgs(models):
    cfg = Config.fromfile(FINETUNE_SMOKE)
    cfg.model.backbone.init_cfg = dict(type='TruncNormal', layer='Linear', std=0.02)
    with pytest.raises(ValueError, match=r'SAMIViT supports init_cfg=dict\(type="Pretrained"'):
        models.build(cfg.model.backbone).init_weights()
