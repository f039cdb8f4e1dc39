"""detectron2 adapter: lazy import, framework choice, backbones, checkpoints, lr decay, full configs.

Tests that need detectron2 skip with a reason naming it; the rest run everywhere.
"""
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO_ROOT

from efficientsam_plugins.detectron2.launch import pop_framework
from efficientsam_plugins.detectron2.lr_decay import vit_lr_decay_rate

CONFIG_DIR = os.path.join(REPO_ROOT, 'configs', 'detectron2', 'vitdet')
FULL_CONFIGS = {'ti': 'sami_ti_coco.py', 's': 'sami_s_coco.py', 'b': 'sami_b_coco.py'}
SMOKE_CONFIG = os.path.join(CONFIG_DIR, 'sami_ti_coco_smoke.py')
DETECTRON2_MISSING = ('detectron2 is not installed; build it from its git repository '
                      '(see docs/detection.md, "detectron2") to run the detectron2 adapter tests')
EMBED_DIMS = {'ti': 192, 's': 384, 'b': 768}


@pytest.fixture
def detectron2():
    return pytest.importorskip('detectron2', reason=DETECTRON2_MISSING)


def _small_vitdet(square_pad=256):
    from efficientsam_plugins.detectron2 import SAMISimpleFeaturePyramid, SAMIViTNet
    return SAMISimpleFeaturePyramid(SAMIViTNet(arch='ti', img_size=256, window_size=8, drop_path_rate=0.0),
                                    out_channels=256, square_pad=square_pad).eval()


def _sami_checkpoint(efficientsam_path):
    """A SAMI pretraining checkpoint (mmengine layout, ViT under ``backbone.``) from EfficientSAM-Ti weights."""
    state_dict = torch.load(efficientsam_path, map_location='cpu', weights_only=True)['model']
    vit = {key[len('image_encoder.'):]: value for key, value in state_dict.items()
           if key.startswith('image_encoder.') and not key.startswith('image_encoder.neck.')}
    return {'meta': {'epoch': 400}, 'state_dict': {f'backbone.{key}': value for key, value in vit.items()}}


def _save_as_mmengine_runner(checkpoint, path, monkeypatch):
    """Adds the message hub mmengine's runner writes (``HistoryBuffer`` s of numpy arrays), pickled as
    the project's mmengine launcher has it pickled; without mmengine the checkpoint stays plain."""
    try:
        from mmengine.logging import HistoryBuffer

        from efficientsam_plugins.openmmlab.checkpoints import _history_buffer_state
    except ImportError:
        torch.save(checkpoint, path)
        return
    monkeypatch.setattr(HistoryBuffer, '__getstate__', _history_buffer_state)
    hub = {'log_scalars': {'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])}, 'runtime_info': {'iter': 20}}
    torch.save(dict(checkpoint, message_hub=hub), path)


def test_package_imports_without_detectron2():
    script = textwrap.dedent('''
        import sys
        sys.modules['detectron2'] = None
        import efficientsam_plugins.detectron2 as adapter
        from efficientsam_plugins.detectron2.launch import pop_framework
        from efficientsam_plugins.detectron2.lr_decay import vit_lr_decay_rate
        assert pop_framework(['--framework', 'detectron2', 'cfg.py']) == ('detectron2', ['cfg.py'])
        try:
            adapter.SAMIViTNet
        except ImportError as err:
            assert '"detectron2"' in str(err) and 'git' in str(err), err
        else:
            raise AssertionError('no ImportError without detectron2')
    ''')
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_framework_is_chosen_on_the_command_line():
    assert pop_framework(['cfg.py', '--work-dir', 'out']) == ('mmengine', ['cfg.py', '--work-dir', 'out'])
    assert pop_framework(['cfg.py', '--framework=detectron2', '--num-gpus', '2', 'train.x=1']) == (
        'detectron2', ['cfg.py', '--num-gpus', '2', 'train.x=1'])
    assert pop_framework(['--framework', 'mmengine', 'cfg.py']) == ('mmengine', ['cfg.py'])
    for tool in ('tools/train.py', 'tools/test.py'):
        result = subprocess.run([sys.executable, tool, '--framework', 'd2', 'cfg.py'], cwd=REPO_ROOT,
                                capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert "invalid choice: 'd2' (choose from 'mmengine', 'detectron2')" in result.stderr


def test_tools_dispatch_to_detectron2_only_when_asked():
    """``--framework detectron2`` reaches the detectron2 launcher (here: its missing-package error), a
    LazyConfig without it goes to mmengine, whatever its text says."""
    script = textwrap.dedent(f'''
        import runpy, sys
        sys.modules['detectron2'] = None
        from efficientsam_plugins.detectron2 import launch
        calls = []
        launch.main = lambda argv: calls.append(argv) or 0
        train = runpy.run_path('tools/train.py')
        assert train['main'](['--framework', 'detectron2', {SMOKE_CONFIG!r}, '--num-gpus', '2']) == 0
        assert calls == [[{SMOKE_CONFIG!r}, '--num-gpus', '2']], calls
        import efficientsam_plugins.openmmlab.launch as mm_launch
        mm_launch.load_config = lambda config, **kwargs: sys.exit(0 if config == {SMOKE_CONFIG!r} else 3)
        train['main']([{SMOKE_CONFIG!r}])
        sys.exit(4)
    ''')
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True, text=True)
    if 'mmengine' in result.stderr and 'ModuleNotFoundError' in result.stderr:
        pytest.skip('mmengine is not installed')
    assert result.returncode == 0, result.stderr


def test_lazy_configs_are_recognised_by_what_loading_gives(detectron2, tmp_path):
    from efficientsam_plugins.detectron2.launch import load_lazy_config
    names = sorted(name for name in os.listdir(CONFIG_DIR) if name.endswith('.py'))  # variants included
    assert set(FULL_CONFIGS.values()) | {'sami_ti_coco_smoke.py', 'sami_ti_coco_step-lr.py'} <= set(names)
    for name in names:  # each keeps what it imports from its parent (lint must not drop those imports)
        cfg = load_lazy_config(os.path.join(CONFIG_DIR, name))
        assert set(cfg) == {'dataloader', 'lr_multiplier', 'model', 'optimizer', 'train'}, name
        assert cfg.model._target_, name
    (tmp_path / 'mm_config.py').write_text("model = dict(type='MaskRCNN')\n")
    (tmp_path / 'plain.py').write_text('x = 1\n')
    for name in ('mm_config.py', 'plain.py'):
        with pytest.raises(ValueError, match=f'{name} is not a detectron2 LazyConfig.*without --framework detectron2'):
            load_lazy_config(str(tmp_path / name))
    with pytest.raises(FileNotFoundError, match='config not found'):
        load_lazy_config(str(tmp_path / 'missing.py'))


def test_main_eval_takes_the_test_py_form(monkeypatch):
    from efficientsam_plugins.detectron2 import launch
    calls = []
    monkeypatch.setattr(launch, 'main', lambda argv: calls.append(argv) or 0)
    assert launch.main_eval(['cfg.py', 'model.pth', '--num-gpus', '2', 'train.output_dir=out']) == 0
    assert launch.main_eval(['cfg.py', 'train.init_checkpoint=model.pth']) == 0
    assert calls == [['--eval-only', 'cfg.py', 'train.init_checkpoint=model.pth', '--num-gpus', '2',
                      'train.output_dir=out'],
                     ['--eval-only', 'cfg.py', 'train.init_checkpoint=model.pth']]


def test_lr_decay_maps_our_names_to_vit_layers():
    rate = 0.7
    assert vit_lr_decay_rate('backbone.net.pos_embed', rate) == pytest.approx(rate ** 13)
    assert vit_lr_decay_rate('backbone.net.patch_embed.proj.weight', rate) == pytest.approx(rate ** 13)
    assert vit_lr_decay_rate('backbone.net.blocks.0.attn.qkv.weight', rate) == pytest.approx(rate ** 12)
    assert vit_lr_decay_rate('backbone.net.blocks.11.mlp.fc2.bias', rate) == pytest.approx(rate)
    for name in ('backbone.pyramid.stages.0.0.weight', 'roi_heads.box_predictor.cls_score.weight',
                 'proposal_generator.rpn_head.conv.weight'):
        assert vit_lr_decay_rate(name, rate) == 1.0


def test_lr_decay_agrees_with_detectron2_on_every_parameter(detectron2):
    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate
    names = [f'backbone.{name}' for name, _ in _small_vitdet().named_parameters()] + [
        'roi_heads.box_head.conv1.weight', 'proposal_generator.rpn_head.objectness_logits.bias']
    assert any('.net.blocks.' in name for name in names) and any('.pyramid.' in name for name in names)
    for name in names:
        assert vit_lr_decay_rate(name, 0.7) == pytest.approx(get_vit_lr_decay_rate(name, 0.7, 12)), name


def test_backbone_levels_and_padding_constraints(detectron2):
    from detectron2.structures import ImageList
    backbone = _small_vitdet(square_pad=256)
    shapes = backbone.output_shape()
    assert list(shapes) == ['p2', 'p3', 'p4', 'p5', 'p6']
    assert [shapes[name].stride for name in shapes] == [4, 8, 16, 32, 64]
    assert {shapes[name].channels for name in shapes} == {256}
    assert backbone.padding_constraints == {'size_divisibility': 32, 'square_size': 256}
    assert backbone.size_divisibility == 32
    with torch.no_grad():
        levels = backbone(torch.randn(1, 3, 256, 256))
    assert [tuple(level.shape[-2:]) for level in levels.values()] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    images = [torch.zeros(3, 200, 150)]
    square = ImageList.from_tensors(images, backbone.size_divisibility,
                                    padding_constraints=backbone.padding_constraints)
    assert tuple(square.tensor.shape[-2:]) == (256, 256)
    unpadded = _small_vitdet(square_pad=0)
    divisible = ImageList.from_tensors(images, padding_constraints=unpadded.padding_constraints)
    assert tuple(divisible.tensor.shape[-2:]) == (224, 160)


def test_vit_backbone_is_the_core_vit(detectron2):
    from efficientsam_plugins.detectron2 import SAMIViTNet
    from efficientsam_plugins.modeling.vit import ViT
    net = SAMIViTNet(arch='ti', img_size=256, window_size=8).eval()
    assert isinstance(net, ViT)
    assert [block.window_size for block in net.blocks] == [8, 8, 0, 8, 8, 0, 8, 8, 0, 8, 8, 0]
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        assert torch.equal(net(x)['last_feat'], net.forward_features(x))
    assert net.output_shape()['last_feat'].stride == 16
    assert net.padding_constraints == {'size_divisibility': 16}


def test_yacs_registry_builds_the_backbones(detectron2):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from efficientsam_plugins.detectron2 import SAMISimpleFeaturePyramid, SAMIViTNet, add_sami_config
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = 'build_sami_vitdet_backbone'
    with pytest.raises(KeyError, match='add_sami_config'):
        build_backbone(cfg)
    add_sami_config(cfg)
    cfg.merge_from_list(['MODEL.SAMI.ARCH', 'ti', 'MODEL.SAMI.IMG_SIZE', 256, 'MODEL.SAMI.WINDOW_SIZE', 8,
                         'MODEL.SAMI.SQUARE_PAD', 256])
    backbone = build_backbone(cfg)
    assert isinstance(backbone, SAMISimpleFeaturePyramid) and isinstance(backbone.net, SAMIViTNet)
    assert backbone.net.embed_dim == 192 and backbone.padding_constraints['square_size'] == 256
    cfg.MODEL.BACKBONE.NAME = 'build_sami_vit_backbone'
    assert list(build_backbone(cfg).output_shape()) == ['last_feat']


def test_checkpointer_loads_efficientsam_sami_zoo_and_detectron2_checkpoints(detectron2, official_vitt_checkpoint,
                                                                             tmp_path, monkeypatch, caplog):
    from efficientsam_plugins.convert import to_backbone_checkpoint
    from efficientsam_plugins.detectron2 import SAMICheckpointer
    efficientsam_path = official_vitt_checkpoint
    expected = torch.load(efficientsam_path, map_location='cpu', weights_only=True)['model']
    sami_path = tmp_path / 'sami_pretrain.pth'
    _save_as_mmengine_runner(_sami_checkpoint(efficientsam_path), sami_path, monkeypatch)
    converted_path = tmp_path / 'vitt_d2.pth'  # tools/convert_checkpoint.py backbone ... --target detectron2
    torch.save(to_backbone_checkpoint(torch.load(efficientsam_path, weights_only=True), 'detectron2'), converted_path)

    def detector():
        model = torch.nn.Module()
        model.backbone = _small_vitdet()
        model.roi_heads = torch.nn.Linear(4, 4)
        return model

    def assert_loaded(model):
        net = model.backbone.net
        assert torch.equal(net.blocks[3].attn.qkv.weight, expected['image_encoder.blocks.3.attn.qkv.weight'])
        assert torch.equal(net.patch_embed.proj.weight, expected['image_encoder.patch_embed.proj.weight'])
        assert torch.equal(net.pos_embed, expected['image_encoder.pos_embed'])

    import efficientsam_plugins.zoo
    monkeypatch.setattr(efficientsam_plugins.zoo, 'get_checkpoint', lambda name: efficientsam_path)
    for source in (efficientsam_path, str(sami_path), str(converted_path), 'zoo://efficientsam_ti'):
        model = detector()
        caplog.clear()
        with caplog.at_level('INFO'):
            SAMICheckpointer(model).load(source)
        assert_loaded(model)
        assert 'backbone.net.blocks.0.attn.rel_pos_h' in caplog.text  # reported as left at initialisation

    checkpointer = SAMICheckpointer(model, str(tmp_path))
    checkpointer.save('detector')
    reloaded = detector()
    SAMICheckpointer(reloaded).load(str(tmp_path / 'detector.pth'))
    assert_loaded(reloaded)
    assert torch.equal(reloaded.roi_heads.weight, model.roi_heads.weight)

    wider = torch.nn.Module()
    from efficientsam_plugins.detectron2 import SAMISimpleFeaturePyramid, SAMIViTNet
    wider.backbone = SAMISimpleFeaturePyramid(SAMIViTNet(arch='s', img_size=256, window_size=8))
    with pytest.raises(ValueError, match='shape mismatches'):
        SAMICheckpointer(wider).load(efficientsam_path)


def test_mmdet_and_detectron2_backbones_give_the_same_maps(detectron2, official_vitt_checkpoint, tmp_path):
    pytest.importorskip('mmengine', reason='the mmdet backbone needs mmengine')
    from efficientsam_plugins.detectron2 import SAMICheckpointer
    from efficientsam_plugins.openmmlab.mmdet import SAMISimpleFPN, SAMIViT
    sami_path = tmp_path / 'sami_pretrain.pth'
    torch.save(_sami_checkpoint(official_vitt_checkpoint), sami_path)
    torch.manual_seed(0)
    d2_model = torch.nn.Module()
    d2_model.backbone = _small_vitdet()
    for block in d2_model.backbone.net.blocks:  # checkpoints of plain ViTs leave these at zero
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.02)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.02)
    SAMICheckpointer(d2_model).load(str(sami_path))
    d2_backbone = d2_model.backbone.eval()

    mm_vit = SAMIViT(arch='ti', preset='vitdet', img_size=256, window_size=8,
                     init_cfg=dict(type='Pretrained', checkpoint=str(sami_path)))
    mm_vit.init_weights()
    mm_neck = SAMISimpleFPN(backbone_channel=192, out_channels=256, num_outs=5)
    for block, d2_block in zip(mm_vit.blocks, d2_backbone.net.blocks):
        block.attn.rel_pos_h.data.copy_(d2_block.attn.rel_pos_h)
        block.attn.rel_pos_w.data.copy_(d2_block.attn.rel_pos_w)
    mm_neck.pyramid.load_state_dict(d2_backbone.pyramid.state_dict())
    assert all(torch.equal(mm_param, d2_param) for mm_param, d2_param in
               zip(mm_vit.state_dict().values(), d2_backbone.net.state_dict().values()))
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        mm_levels = mm_neck(mm_vit.eval()(images))
        d2_levels = list(d2_backbone(images).values())
    assert len(mm_levels) == len(d2_levels) == 5
    for mm_level, d2_level in zip(mm_levels, d2_levels):
        torch.testing.assert_close(mm_level, d2_level, rtol=0, atol=0)


@pytest.mark.parametrize('arch', sorted(FULL_CONFIGS))
def test_full_configs_instantiate(detectron2, arch):
    import detectron2.data.transforms as T
    from detectron2.config import LazyConfig, instantiate
    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

    from efficientsam_plugins.detectron2 import SAMISimpleFeaturePyramid
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, FULL_CONFIGS[arch]))
    model = instantiate(cfg.model)
    backbone = model.backbone
    assert isinstance(backbone, SAMISimpleFeaturePyramid)
    assert backbone.net.embed_dim == EMBED_DIMS[arch] and backbone.net.img_size == 1024
    assert [block.window_size for block in backbone.net.blocks] == [14, 14, 0] * 4
    assert backbone.net.blocks[0].attn.rel_pos_h.shape[0] == 27
    assert backbone.net.blocks[2].attn.rel_pos_h.shape[0] == 127
    assert backbone.padding_constraints == {'size_divisibility': 32, 'square_size': 1024}
    assert [shape.stride for shape in backbone.output_shape().values()] == [4, 8, 16, 32, 64]
    assert model.input_format == 'RGB' and cfg.dataloader.train.mapper.image_format == 'RGB'
    assert cfg.train.amp.enabled and cfg.train.max_iter == 184375
    assert cfg.dataloader.train.total_batch_size == 64
    augmentations = [aug._target_ for aug in cfg.dataloader.train.mapper.augmentations]
    assert augmentations == [T.RandomFlip, T.ResizeScale, T.FixedSizeCrop]
    assert cfg.dataloader.train.mapper.augmentations[1].target_height == 1024

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    group_of = {id(param): group for group in optimizer.param_groups for param in group['params']}
    names = dict(model.named_parameters())
    for name, param in names.items():
        expected_lr = 2e-4 * get_vit_lr_decay_rate(name, 0.7, 12)
        assert group_of[id(param)]['lr'] == pytest.approx(expected_lr), name
    assert group_of[id(names['backbone.net.pos_embed'])]['weight_decay'] == 0.0
    assert group_of[id(names['backbone.net.blocks.0.norm1.weight'])]['weight_decay'] == 0.0
    assert group_of[id(names['backbone.net.blocks.0.attn.qkv.bias'])]['weight_decay'] == 0.0
    assert group_of[id(names['backbone.net.blocks.0.attn.qkv.weight'])]['weight_decay'] == 0.1
    assert group_of[id(names['backbone.net.blocks.2.attn.rel_pos_h'])]['weight_decay'] == 0.1
    assert len(optimizer.param_groups) < 60  # parameters with equal settings share a group

    scheduler = instantiate(cfg.lr_multiplier)  # the paper's: warm-up over 10% of training, cosine to 0
    assert scheduler(0.0) == pytest.approx(0.001)
    assert scheduler(0.1) == pytest.approx(1.0) and scheduler(0.55) == pytest.approx(0.5)
    assert scheduler(0.999) == pytest.approx(0.0, abs=1e-4)
    assert math.isclose(cfg.lr_multiplier.warmup_length, 0.1)
