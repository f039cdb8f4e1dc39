"""ViTDet Mask R-CNN with SAMI backbones in mmdet: configs, checkpoint loading, training, drop-in."""
import json
import os
import textwrap

import pytest
import torch
from conftest import COCO_MINI

pytest.importorskip('mmdet', reason='mmdet is not installed (pip install -e .[mm])')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import efficientsam_plugins.openmmlab.mmdet  # noqa: E402,F401
from efficientsam_plugins.modeling.vit import ViT  # noqa: E402
from efficientsam_plugins.openmmlab.mmdet import SAMIViT  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
DATA_ROOT = COCO_MINI + '/'  # absolute: tests do not run from the repository root


def build_detector(cfg):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('variant,width', [('ti', 192), ('s', 384), ('b', 768)])
def test_full_configs_build_and_run(variant, width):
    from mmdet.structures import DetDataSample
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', 'vitdet', f'sami_{variant}_coco.py'))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.train_cfg.max_epochs == 100 and cfg.auto_scale_lr.base_batch_size == 64
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg).eval()
    assert model.backbone.embed_dim == width and model.backbone.blocks[2].window_size == 0
    image = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        features = model.extract_feat(image)
        sample = DetDataSample(metainfo=dict(img_shape=(128, 160), ori_shape=(128, 160),
                                             scale_factor=(1.0, 1.0), batch_input_shape=(128, 160)))
        results = model.predict(image, [sample])
    assert [f.shape[-2:] for f in features] == [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    assert all(f.shape[1] == 256 for f in features)
    assert 'masks' in results[0].pred_instances


def test_layer_decay_groups():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', 'vitdet', 'sami_ti_coco.py'))
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg)
    cfg.optim_wrapper.type = 'OptimWrapper'
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    by_param = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    lr = cfg.optim_wrapper.optimizer.lr
    assert by_param[id(named['backbone.pos_embed'])]['lr'] == pytest.approx(lr * 0.7 ** 13)
    assert by_param[id(named['backbone.pos_embed'])]['weight_decay'] == 0
    assert by_param[id(named['backbone.blocks.0.attn.qkv.weight'])]['lr'] == pytest.approx(lr * 0.7 ** 12)
    assert by_param[id(named['backbone.blocks.11.mlp.fc1.weight'])]['lr'] == pytest.approx(lr * 0.7)
    assert by_param[id(named['backbone.blocks.11.mlp.fc1.weight'])]['weight_decay'] == 0.1
    assert by_param[id(named['backbone.blocks.2.attn.rel_pos_h'])]['weight_decay'] == 0.1  # as in ViTDet
    head_param = next(n for n in named if n.startswith('roi_head.'))
    assert by_param[id(named[head_param])]['lr'] == pytest.approx(lr)


def test_backbone_loads_official_efficientsam_checkpoint(official_vitt_checkpoint):
    path = official_vitt_checkpoint
    backbone = SAMIViT('ti', preset='vitdet', img_size=256, init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    official = torch.load(path, weights_only=True)['model']
    torch.testing.assert_close(backbone.blocks[5].attn.qkv.weight, official['image_encoder.blocks.5.attn.qkv.weight'])
    torch.testing.assert_close(backbone.pos_embed, official['image_encoder.pos_embed'])
    assert backbone(torch.rand(1, 3, 256, 256))[0].shape == (1, 192, 16, 16)


def test_backbone_loads_sami_and_mae_layouts(tmp_path):
    source = ViT('ti', final_norm=True)
    sami = {'meta': {}, 'state_dict': {**{f'backbone.{k}': v for k, v in source.state_dict().items()},
                                       'neck.decoder.weight': torch.zeros(2), 'head.proj.weight': torch.zeros(2)}}
    torch.save(sami, tmp_path / 'sami.pth')
    mae = {'model': {**source.state_dict(), 'cls_token': torch.zeros(1, 1, 192), 'head.weight': torch.zeros(10, 192),
                     'mask_token': torch.zeros(1, 1, 192), 'decoder_pos_embed': torch.zeros(1, 197, 512)}}
    torch.save(mae, tmp_path / 'mae.pth')
    for name in ('sami.pth', 'mae.pth'):
        backbone = SAMIViT('ti', preset='vitdet', img_size=224,
                           init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / name)))
        backbone.init_weights()
        torch.testing.assert_close(backbone.blocks[11].mlp.fc2.weight, source.blocks[11].mlp.fc2.weight)


def test_backbone_refuses_mismatched_checkpoints(tmp_path, official_vitt_checkpoint):
    path = official_vitt_checkpoint
    with pytest.raises(ValueError, match=r'384 dims and 12 blocks: shape mismatches \(pos_embed'):
        SAMIViT('s', preset='vitdet', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
    deeper = ViT({'embed_dim': 192, 'depth': 13, 'num_heads': 3})
    torch.save(deeper.state_dict(), tmp_path / 'deeper.pth')
    for name, error, message in (('deeper.pth', ValueError, r'unexpected keys \(blocks\.12\.'),
                                 ('none.pth', FileNotFoundError, 'checkpoint file not found')):
        with pytest.raises(error, match=message):
            init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / name))
            SAMIViT('ti', preset='vitdet', init_cfg=init_cfg).init_weights()


def test_backbone_loads_zoo_names(tmp_path, monkeypatch, official_vitt_checkpoint):
    path = official_vitt_checkpoint
    manifest = tmp_path / 'zoo.json'
    manifest.write_text(json.dumps([dict(name='test_vitt', filename='test_vitt.pt', urls=['file://' + path],
                                         size=os.path.getsize(path), sha256=None, license='test',
                                         arch={'family': 'efficientsam', 'config': 'ti'}, description='random ViT-T')]))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(manifest))
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))
    backbone = SAMIViT('ti', preset='vitdet', img_size=256, init_cfg=dict(type='Pretrained', checkpoint='zoo://test_vitt'))
    backbone.init_weights()
    official = torch.load(path, weights_only=True)['model']
    torch.testing.assert_close(backbone.blocks[0].norm1.weight, official['image_encoder.blocks.0.norm1.weight'])


def _point_at_bundled_data(cfg, work_dir):
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = DATA_ROOT
    cfg.val_evaluator.ann_file = DATA_ROOT + 'annotations/instances_val2017.json'
    cfg.test_evaluator.ann_file = cfg.val_evaluator.ann_file
    return _isolated(cfg, work_dir)


def _isolated(cfg, work_dir):
    """Own work dir and visualizer: mmengine reuses a same-named visualizer across runners."""
    cfg.work_dir = str(work_dir)
    cfg.visualizer.name = f'visualizer_{os.path.basename(str(work_dir))}_{id(cfg)}'
    return cfg


def _run_tool(name, *argv):
    """Runs ``tools/<name>``'s ``main`` in this process (the launcher users call)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'tool_{name[:-3]}', os.path.join(REPO_ROOT, 'tools', name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(argv))


def _train_losses(work_dir):
    logs = [os.path.join(root, f) for root, _, files in os.walk(work_dir) for f in files if f == 'scalars.json']
    with open(sorted(logs)[-1]) as f:
        records = [json.loads(line) for line in f]
    return [r['loss'] for r in records if 'loss' in r]


def test_smoke_config_trains_evaluates_and_tests_from_checkpoint(tmp_path):
    from mmengine.runner import Runner
    cfg = _point_at_bundled_data(Config.fromfile(os.path.join(REPO_ROOT, 'configs', 'vitdet', 'sami_ti_coco_smoke.py')),
                            tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = _train_losses(tmp_path)
    assert len(losses) >= 4
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses
    val_metrics = runner.val_loop.run()
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0.0 <= val_metrics[key] <= 1.0
    checkpoint = tmp_path / f'epoch_{cfg.train_cfg.max_epochs}.pth'
    assert checkpoint.is_file()
    test_metrics = _run_tool('test.py', os.path.join(REPO_ROOT, 'configs', 'vitdet', 'sami_ti_coco_smoke.py'),
                             str(checkpoint), '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                             f'test_dataloader.dataset.data_root={DATA_ROOT}',
                             f'test_evaluator.ann_file={DATA_ROOT}annotations/instances_val2017.json',
                             'visualizer.name=visualizer_tools_test')
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert test_metrics[key] == pytest.approx(val_metrics[key])


def test_drop_in_into_unmodified_mmdet_config(tmp_path):
    from mmengine.runner import Runner
    config = tmp_path / 'mask-rcnn_sami-ti_fpn_1x_coco.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
        custom_imports = dict(imports=['efficientsam_plugins.openmmlab.mmdet'], allow_failed_imports=False)
        model = dict(
            backbone=dict(_delete_=True, type='SAMIViT', arch='ti', preset='vitdet', img_size=128),
            neck=dict(_delete_=True, type='SAMISimpleFPN', backbone_channel=192, out_channels=256, num_outs=5),
            train_cfg=dict(rcnn=dict(sampler=dict(num=32))))
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='Resize', scale=(128, 128), keep_ratio=True),
            dict(type='PackDetInputs'),
        ]
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{DATA_ROOT}', pipeline=train_pipeline))
        train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=3, val_interval=100)
        val_dataloader = None
        val_evaluator = None
        val_cfg = None
        test_dataloader = None
        test_evaluator = None
        test_cfg = None
        default_hooks = dict(checkpoint=dict(by_epoch=False, interval=100), logger=dict(interval=1))
        log_processor = dict(by_epoch=False)
    '''))
    cfg = _isolated(Config.fromfile(str(config)), tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    assert type(runner.model.backbone).__name__ == 'SAMIViT'
    runner.train()
    losses = _train_losses(tmp_path / 'work')
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
