"""SAMI's mmpretrain adapter: configs, algorithm, teacher isolation, pipeline steps, layer decay."""
import copy
import glob
import os

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('segment_anything')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from test_sami_core import save_tiny_sam  # noqa: E402

import efficientsam_plugins.openmmlab.mmpretrain  # noqa: E402,F401
from efficientsam_plugins.training.feature_cache import FeatureCacheWriter  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PRETRAIN = os.path.join(REPO, 'configs', 'sami', 'sami_vit-{}_sam-vit-h_in1k-400e{}.py')
FINETUNE = os.path.join(REPO, 'configs', 'imagenet', 'sami_vit-{}_in1k-100e{}.py')
VARIANTS = {'tiny': 'ti', 'small': 's', 'base': 'b'}  # file name -> the configs' (the core's) arch
SMOKE_TEACHER = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=[1], img_size=256,
                     window_size=2, out_chans=32)


@pytest.fixture(scope='module')
def registry():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS, TRANSFORMS
    return MODELS, TRANSFORMS


@pytest.fixture
def smoke_model_cfg(tmp_path):
    save_tiny_sam(tmp_path / 'tiny_sam.pth', SMOKE_TEACHER)
    cfg = Config.fromfile(PRETRAIN.format('tiny', '_smoke'))
    cfg.model.target_generator.checkpoint = str(tmp_path / 'tiny_sam.pth')
    return cfg.model


def _batch(n=2, size=64):
    from mmpretrain.structures import DataSample
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(n)]
    return torch.randn(n, 3, size, size), samples


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])  # as the file names spell them
def test_pretrain_configs_follow_the_paper_recipe(arch):
    cfg = Config.fromfile(PRETRAIN.format(arch, ''))
    assert cfg.model.type == 'SAMI' and cfg.model.mask_ratio == 0.75
    assert cfg.model.backbone.arch == VARIANTS[arch] and cfg.model.backbone.img_size == 224
    assert (cfg.model.neck.depth, cfg.model.neck.embed_dim) == (8, 512)
    assert cfg.model.target_generator.arch == 'vit_h'
    assert 'efficientsam_plugins.openmmlab.mmpretrain' in cfg.custom_imports.imports
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.lr == pytest.approx(2.4e-3)
    assert tuple(optimizer.betas) == (0.9, 0.95) and optimizer.weight_decay == 0.05
    assert cfg.auto_scale_lr == dict(base_batch_size=4096, enable=True)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.end) == ('LinearLR', 40, 'CosineAnnealingLR', 400)
    assert cfg.train_cfg.max_epochs == 400
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert crop.type == 'SAMIRandomResizedCrop' and crop.scale == 224
    assert Config.fromfile(PRETRAIN.format(arch, '_smoke')).model.backbone.arch == VARIANTS[arch]


@pytest.mark.parametrize('arch,decay,dim', [('tiny', 1.0, 192), ('small', 0.75, 384), ('base', 0.75, 768)])
def test_finetune_configs_follow_the_paper_recipe(arch, decay, dim):
    cfg = Config.fromfile(FINETUNE.format(arch, ''))
    backbone = cfg.model.backbone
    assert backbone.type == 'SAMIViT' and backbone.arch == VARIANTS[arch]
    assert backbone.init_cfg.type == 'Pretrained' and backbone.init_cfg.prefix == 'backbone.'
    assert cfg.model.head.in_channels == dim
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert cfg.train_dataloader.batch_size * 8 == 1024 and cfg.train_cfg.max_epochs == 100
    assert [a.alpha for a in cfg.model.train_cfg.augments] == [0.8, 1.0]
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert any(t.type == 'RandAugment' for t in cfg.train_dataloader.dataset.pipeline)
    smoke = Config.fromfile(FINETUNE.format(arch, '_smoke'))
    assert (smoke.model.backbone.arch, smoke.model.head.in_channels) == (VARIANTS[arch], dim)
    assert smoke.optim_wrapper.paramwise_cfg.layer_decay_rate == decay


def test_every_config_has_a_smoke_variant():
    configs = glob.glob(os.path.join(REPO, 'configs', 'sami', '*.py'))
    configs += glob.glob(os.path.join(REPO, 'configs', 'imagenet', 'sami_*.py'))
    full = [c for c in configs if not c.endswith('_smoke.py')]
    assert len(full) == 9
    for path in full:
        assert os.path.isfile(path[:-3] + '_smoke.py'), path


def test_sami_loss_trains_the_student_only(registry, smoke_model_cfg):
    models, _ = registry
    model = models.build(smoke_model_cfg)
    images, samples = _batch()
    losses = model.loss(images, samples)
    assert set(losses) == {'loss'} and torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert not any(k.startswith('target_generator') for k in model.state_dict())
    assert all(not n.startswith('target_generator') for n, _ in model.named_parameters())


def test_parent_init_cfg_never_reinitialises_the_teacher(registry, smoke_model_cfg):
    models, _ = registry
    cfg = copy.deepcopy(smoke_model_cfg)
    cfg.init_cfg = [dict(type='Xavier', layer='Linear', distribution='uniform'),
                    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)]
    model = models.build(cfg)
    before = copy.deepcopy(model.teacher.state_dict())
    model.init_weights()
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    model.double()
    assert model.teacher.encoder.patch_embed.proj.weight.dtype == torch.float64


def test_sami_configuration_errors(registry, smoke_model_cfg):
    models, _ = registry
    for ratio in (0.0, 1.0):
        with pytest.raises(ValueError, match='strictly between 0 and 1'):
            models.build(dict(smoke_model_cfg, mask_ratio=ratio))
    with pytest.raises(ValueError, match='unknown teacher_mode'):
        models.build(dict(smoke_model_cfg, teacher_mode='offline'))
    with pytest.raises(ValueError, match='needs a target_generator'):
        models.build(dict(smoke_model_cfg, target_generator=None))
    with pytest.raises(ValueError, match='projects to 16 channels'):
        models.build(dict(smoke_model_cfg, head=dict(smoke_model_cfg.head, out_channels=16)))
    cached = models.build(dict(smoke_model_cfg, teacher_mode='cached'))
    assert cached.teacher is None
    images, samples = _batch()
    with pytest.raises(ValueError, match='LoadSAMITeacherTarget'):
        cached.loss(images, samples)
    for sample in samples:
        sample.set_field(torch.zeros(32, 4, 4, dtype=torch.float16), 'sami_target')
    assert torch.isfinite(cached.loss(images, samples)['loss'])
    online = models.build(smoke_model_cfg)
    with pytest.raises(ValueError, match="teacher_mode='online'"):
        online.loss(images, samples)


def test_random_resized_crop_records_its_view_box(registry):
    _, transforms = registry
    crop = transforms.build(dict(type='SAMIRandomResizedCrop', scale=16, crop_ratio_range=(0.2, 0.5),
                                 backend='pillow', interpolation='nearest'))
    ys, xs = np.meshgrid(np.arange(60), np.arange(80), indexing='ij')
    img = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)
    np.random.seed(0)
    out = crop.transform(dict(img=img))
    x1, y1, x2, y2 = out['sami_view_box']
    assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and out['img'].shape == (16, 16, 3)
    assert abs(out['img'][..., 0].min() - x1 * 80) <= 3 and abs(out['img'][..., 0].max() + 1 - x2 * 80) <= 3
    assert abs(out['img'][..., 1].min() - y1 * 60) <= 3 and abs(out['img'][..., 1].max() + 1 - y2 * 60) <= 3
    with pytest.raises(ValueError, match='before RandomFlip'):
        crop.transform(dict(img=img, flip=True))


def test_load_cached_target_follows_the_view(registry, tmp_path):
    _, transforms = registry
    root = str(tmp_path / 'cache')
    maps = torch.randn(3, 4, 4)
    with FeatureCacheWriter(root, dict(teacher={}, image_root=str(tmp_path))) as writer:
        writer.add('a/img.jpg', maps)
    load = transforms.build(dict(type='LoadSAMITeacherTarget', cache_root=root, patch_size=16))
    results = dict(img_path=str(tmp_path / 'a' / 'img.jpg'), img_shape=(64, 64, 3))
    torch.testing.assert_close(load.transform(dict(results))['sami_target'].float(), maps.half().float())
    flipped = load.transform(dict(results, flip=True, flip_direction='horizontal'))['sami_target']
    torch.testing.assert_close(flipped.float(), maps.half().float().flip(-1))
    half = load.transform(dict(results, img_shape=(64, 32, 3), sami_view_box=(0.0, 0.0, 0.5, 1.0)))
    torch.testing.assert_close(half['sami_target'].float(), maps.half().float()[:, :, :2])
    with pytest.raises(ValueError, match='horizontal flips only'):
        load.transform(dict(results, flip=True, flip_direction='vertical'))
    with pytest.raises(KeyError, match='not in the teacher-feature cache'):
        load.transform(dict(results, img_path=str(tmp_path / 'other.jpg')))


def test_layer_decay_of_the_finetuned_backbone(registry):
    from mmengine.optim import build_optim_wrapper
    models, _ = registry
    cfg = Config.fromfile(FINETUNE.format('small', '_smoke'))
    cfg.model.backbone.init_cfg = None
    model = models.build(cfg.model)
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    scale = {g['param_name']: g['lr_scale'] for g in groups}
    decay = {g['param_name']: g['weight_decay'] for g in groups}
    assert scale['backbone.pos_embed'] == pytest.approx(0.75 ** 13)
    assert scale['backbone.blocks.0.attn.qkv.weight'] == pytest.approx(0.75 ** 12)
    assert scale['backbone.blocks.11.mlp.fc1.weight'] == pytest.approx(0.75)
    assert scale['head.fc.weight'] == 1.0 and scale['backbone.fc_norm.weight'] == 1.0
    assert decay['backbone.blocks.0.norm1.weight'] == 0.0 and decay['backbone.pos_embed'] == 0.0
    assert decay['backbone.blocks.0.attn.qkv.weight'] == 0.05


def test_finetuning_backbone_loads_the_sami_checkpoint(registry, smoke_model_cfg, tmp_path):
    models, _ = registry
    sami = models.build(smoke_model_cfg)
    path = str(tmp_path / 'sami.pth')
    torch.save(dict(state_dict=sami.state_dict(), meta=dict(iter=1)), path)
    cfg = Config.fromfile(FINETUNE.format('tiny', '_smoke'))
    cfg.model.backbone.init_cfg.checkpoint = path
    classifier = models.build(cfg.model)
    classifier.init_weights()
    loaded = classifier.backbone.state_dict()
    for key, value in sami.backbone.state_dict().items():
        if not key.startswith('norm.'):
            assert torch.equal(loaded[key], value), key


def test_launcher_config_handling(tmp_path):
    from efficientsam_plugins.openmmlab.launch import load_config
    smoke = PRETRAIN.format('tiny', '_smoke')
    cfg = load_config(smoke, cfg_options={'train_cfg.max_iters': 3})
    assert cfg.work_dir == os.path.join('work_dirs', 'sami_vit-tiny_sam-vit-h_in1k-400e_smoke')
    assert cfg.train_cfg.max_iters == 3 and '_scope_' not in cfg.train_dataloader.collate_fn
    resumed = load_config(smoke, work_dir=str(tmp_path), resume='auto')  # no checkpoint there yet: a fresh start
    assert not resumed.resume and resumed.load_from is None and resumed.work_dir == str(tmp_path)
    with pytest.raises(FileNotFoundError, match='resume from not found'):
        load_config(smoke, resume=str(tmp_path / 'missing.pth'))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='needs a CUDA device'):
            load_config(smoke, amp=True)
        distributed = load_config(smoke, launcher='pytorch')
        assert distributed.env_cfg.dist_cfg.backend == 'gloo'
        assert distributed.model_wrapper_cfg.device_ids is None
