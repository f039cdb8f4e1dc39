"""Mask2Former with SAMI backbones in mmseg: configs, layer decay, checkpoint loading, smoke training."""
import json
import os

import pytest
import torch
from conftest import COCO_MINI

pytest.importorskip('mmseg', reason='mmseg is not installed (pip install -e .[mm])')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import efficientsam_plugins.openmmlab.mmseg  # noqa: E402,F401
from efficientsam_plugins.openmmlab.mmseg import SAMISimpleFPN, SAMIViT  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
CONFIGS = os.path.join(REPO_ROOT, 'configs', 'mask2former')
DATA_ROOT = COCO_MINI + '/'  # absolute: tests do not run from the repository root


def build_segmentor(cfg):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    return MODELS.build(cfg.model)


def test_mmseg_registers_the_shared_classes():
    from mmseg.registry import DATASETS, MODELS
    assert MODELS.get('SAMIViT') is SAMIViT and MODELS.get('SAMISimpleFPN') is SAMISimpleFPN
    assert DATASETS.get('SAMICocoSemanticDataset') is not None


@pytest.mark.parametrize('variant,width', [('ti', 192), ('s', 384), ('b', 768)])
def test_full_configs_build_and_run(variant, width):
    from mmseg.structures import SegDataSample
    cfg = Config.fromfile(os.path.join(CONFIGS, f'sami_{variant}_ade20k.py'))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.train_cfg.max_iters == 160000 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.batch_size == 2 and cfg.crop_size == (512, 512)
    assert cfg.optim_wrapper.optimizer.lr == 2e-4 and cfg.param_scheduler[0].type == 'PolyLR'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 1.0 and cfg.model.test_cfg.mode == 'slide'
    cfg.model.backbone.init_cfg = None
    model = build_segmentor(cfg).eval()
    assert model.backbone.embed_dim == width and all(b.window_size == 0 for b in model.backbone.blocks)
    image = torch.rand(1, 3, 128, 160)
    shape = dict(img_shape=(128, 160), ori_shape=(128, 160), pad_shape=(128, 160), batch_input_shape=(128, 160))
    with torch.no_grad():
        features = model.extract_feat(image)
        results = model.predict(image, [SegDataSample(metainfo=shape)])
    assert [tuple(f.shape[-2:]) for f in features] == [(32, 40), (16, 20), (8, 10), (4, 5)]
    assert all(f.shape[1] == 256 for f in features)
    assert results[0].seg_logits.data.shape == (150, 128, 160)
    assert results[0].pred_sem_seg.data.shape == (1, 128, 160)


def test_layer_decay_variant_groups():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(os.path.join(CONFIGS, 'sami_ti_ade20k_layer-decay.py'))
    cfg.model.backbone.init_cfg = None
    model = build_segmentor(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    by_param = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    lr, backbone_lr = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.lr * 0.1

    def group(name):
        return by_param[id(named[name])]

    assert group('backbone.pos_embed')['lr'] == pytest.approx(backbone_lr * 0.9 ** 13)
    assert group('backbone.pos_embed')['weight_decay'] == 0
    assert group('backbone.blocks.0.attn.qkv.weight')['lr'] == pytest.approx(backbone_lr * 0.9 ** 12)
    assert group('backbone.blocks.11.mlp.fc1.weight')['lr'] == pytest.approx(backbone_lr * 0.9)
    assert group('backbone.blocks.11.mlp.fc1.weight')['weight_decay'] == 0.05
    assert group('backbone.blocks.3.attn.rel_pos_h')['weight_decay'] == 0.05  # as in ViTDet
    neck_weight = next(n for n in named if n.startswith('neck.') and named[n].ndim == 4)
    assert group(neck_weight)['lr'] == pytest.approx(lr) and group(neck_weight)['weight_decay'] == 0.05
    for name in ('decode_head.query_embed.weight', 'decode_head.query_feat.weight', 'decode_head.level_embed.weight'):
        assert group(name)['lr'] == pytest.approx(lr) and group(name)['weight_decay'] == 0


def test_full_config_loads_official_efficientsam_checkpoint(official_vitt_checkpoint):
    path = official_vitt_checkpoint
    cfg = Config.fromfile(os.path.join(CONFIGS, 'sami_ti_ade20k.py'))
    cfg.model.backbone.init_cfg.checkpoint = path
    model = build_segmentor(cfg)
    model.init_weights()
    official = torch.load(path, weights_only=True)['model']
    for name in ('blocks.7.attn.qkv.weight', 'patch_embed.proj.weight', 'pos_embed'):
        torch.testing.assert_close(model.backbone.get_parameter(name), official[f'image_encoder.{name}'])


def test_bundled_semantic_data_loads():
    cfg = Config.fromfile(os.path.join(CONFIGS, 'sami_ti_ade20k_smoke.py'))
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    dataset_cfg = cfg.val_dataloader.dataset
    dataset_cfg.data_root = os.path.join(REPO_ROOT, dataset_cfg.data_root)
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 8 and len(dataset.metainfo['classes']) == 81
    sample = dataset[0]
    labels = set(sample['data_samples'].gt_sem_seg.data.unique().tolist())
    assert labels and labels <= set(range(81)) | {255}
    assert sample['data_samples'].gt_sem_seg.data.shape[-2:] == sample['data_samples'].ori_shape


def _scalars(work_dir):
    logs = [os.path.join(root, f) for root, _, files in os.walk(work_dir) for f in files if f == 'scalars.json']
    with open(sorted(logs)[-1]) as f:
        return [json.loads(line) for line in f]


def test_smoke_config_trains_and_evaluates_miou(tmp_path):
    from mmengine.runner import Runner
    cfg = Config.fromfile(os.path.join(CONFIGS, 'sami_ti_ade20k_smoke.py'))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = DATA_ROOT
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    assert len(runner.val_dataloader.dataset) == 8
    runner.train()
    records = _scalars(tmp_path)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) >= 6
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses
    miou = [r['mIoU'] for r in records if 'mIoU' in r]
    assert len(miou) == 1 and 0.0 <= miou[0] <= 100.0
    assert (tmp_path / f'iter_{cfg.train_cfg.max_iters}.pth').is_file()
