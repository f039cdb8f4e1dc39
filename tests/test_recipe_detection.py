"""Recipe fidelity of the detection (mmdet, detectron2) and Mask2Former configs, checked on built objects.

Each test builds what a run would build (the model on a real pipeline sample, the runner's optimizer
and parameter schedulers, detectron2's scheduler) and checks its behaviour against the EfficientSAM
paper's recipe: the token grid the ViT sees at test time, the lr curve, weight decay, initial weights.
detectron2 parts skip with a reason where it is absent.
"""
import math
import os

import pytest
import torch
from conftest import COCO_MINI, REPO_ROOT

pytest.importorskip('mmdet', reason='mmdet is not installed (pip install -e .[mm])')
pytest.importorskip('mmseg', reason='mmseg is not installed (pip install -e .[mm])')

from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import efficientsam_plugins.openmmlab.mmdet  # noqa: E402,F401
import efficientsam_plugins.openmmlab.mmseg  # noqa: E402,F401

MMDET_CONFIGS = os.path.join(REPO_ROOT, 'configs', 'vitdet')
D2_CONFIGS = os.path.join(REPO_ROOT, 'configs', 'detectron2', 'vitdet')
MASK2FORMER_CONFIGS = os.path.join(REPO_ROOT, 'configs', 'mask2former')
DETECTRON2_MISSING = ('detectron2 is not installed; build it from its git repository '
                      '(see docs/detection.md, "detectron2") to check the detectron2 recipe')
SAMI_CHECKPOINTS = {'ti': 'work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth',
                    's': 'work_dirs/sami_vit-small_sam-vit-h_in1k-400e/epoch_400.pth',
                    'b': 'work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth'}


def paper_multiplier(progress: float) -> float:
    """The paper's lr factor at a fraction of training: linear warm-up (from 0.001) over the first 10%
    of training (10 of 100 epochs), then cosine decay from 1 to 0."""
    if progress < 0.1:
        return 0.001 + 0.999 * progress / 0.1
    return 0.5 * (1 + math.cos(math.pi * (progress - 0.1) / 0.9))


def record_patch_grids(backbone):
    """Token grids (h, w) the ViT's patch embedding produces, one per forward."""
    grids = []
    backbone.patch_embed.register_forward_hook(lambda module, args, out: grids.append(tuple(out.shape[-2:])))
    return grids


def mmdet_config(name):
    cfg = Config.fromfile(os.path.join(MMDET_CONFIGS, name))
    cfg.model.backbone.init_cfg = None
    return cfg


def build_mmdet(cfg):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def mmdet_schedule(name, tmp_path):
    """(lr per iteration of the head's group, iterations) from the runner's own optimizer and param
    schedulers, stepped as ParamSchedulerHook steps them; one image per iteration on data/coco_mini."""
    from mmengine.runner import Runner
    cfg = mmdet_config(name)
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs CUDA; the schedule does not depend on it
    cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = COCO_MINI + '/'
    cfg.work_dir = str(tmp_path)
    cfg.visualizer.name = f'visualizer_schedule_{id(cfg)}'
    runner = Runner.from_cfg(cfg)
    iterations = runner.train_loop.max_iters  # builds the loop, so schedulers get their default end
    runner.optim_wrapper = wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    schedulers = runner.build_param_scheduler(runner.param_schedulers)
    lrs = []
    for _ in range(iterations):
        lrs.append(max(wrapper.get_lr()['lr']))
        for scheduler in schedulers:
            scheduler.step()
    return lrs, iterations, len(runner.train_dataloader)


# 1. Test-time square padding (mmdet).

def test_mmdet_test_image_reaches_the_vit_as_the_training_grid_and_boxes_stay_inside():
    from mmdet.registry import DATASETS
    cfg = mmdet_config('sami_ti_coco.py')
    # Random weights: keep every box, so that clipping is exercised; fewer of them, for speed.
    cfg.model.test_cfg.rpn.max_per_img = 100
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    model = build_mmdet(cfg).eval()
    grids = record_patch_grids(model.backbone)
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.update(data_root=COCO_MINI + '/', ann_file='annotations/instances_val2017.json')
    dataset = DATASETS.build(dataset_cfg)
    sample = dataset[0]
    height, width = sample['data_samples'].ori_shape
    assert height != width  # a 640x427 COCO image: 1024x683 after the test resize
    with torch.no_grad():
        result = model.test_step(pseudo_collate([sample]))[0]
    assert grids == [(64, 64)]
    assert result.batch_input_shape == (1024, 1024)
    assert result.img_shape == (round(height * 1024 / width), 1024)  # the real image, not the square
    boxes = result.pred_instances.bboxes
    assert len(boxes) > 0
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= width
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= height
    assert result.pred_instances.masks.shape[-2:] == (height, width)


def test_mmdet_data_preprocessor_pads_only_test_batches_and_refuses_bad_sizes():
    from mmdet.structures import DetDataSample

    from efficientsam_plugins.openmmlab.mmdet import SAMIDetDataPreprocessor
    preprocessor = SAMIDetDataPreprocessor(test_pad_size=(64, 64), pad_size_divisor=32)
    data = dict(inputs=[torch.zeros(3, 40, 50, dtype=torch.uint8)],
                data_samples=[DetDataSample(metainfo=dict(img_shape=(40, 50)))])
    test = preprocessor(dict(data), training=False)
    assert test['inputs'].shape[-2:] == (64, 64)
    assert test['data_samples'][0].img_shape == (40, 50) and test['data_samples'][0].batch_input_shape == (64, 64)
    with pytest.raises(ValueError, match='test_pad_size'):
        SAMIDetDataPreprocessor(test_pad_size=(64,))


# 2. Learning-rate schedule: the paper's curve in both frameworks; ViTDet's steps as a variant.

def test_mmdet_schedule_is_the_papers_warmup_and_cosine(tmp_path):
    lrs, iterations, epoch_length = mmdet_schedule('sami_ti_coco.py', tmp_path)
    assert iterations == 100 * epoch_length  # 100 epochs, whatever the epoch length
    base_lr, warmup = 2e-4, iterations // 10
    assert lrs[0] == pytest.approx(base_lr * 0.001)
    for step, lr in enumerate(lrs):
        if step < warmup:  # mmengine's LinearLR reaches 1 one iteration earlier than the exact line
            assert base_lr * paper_multiplier(step / iterations) - 1e-12 <= lr
            assert lr <= base_lr * paper_multiplier((step + 1) / iterations) + 1e-12
        else:
            assert lr == pytest.approx(base_lr * paper_multiplier(step / iterations), abs=1e-10), step
    assert lrs[warmup] == pytest.approx(base_lr) and lrs[-1] < 1e-3 * base_lr


def test_mmdet_step_lr_variant_is_vitdets_schedule(tmp_path):
    lrs, iterations, epoch_length = mmdet_schedule('sami_ti_coco_step-lr.py', tmp_path)
    base_lr = 1e-4
    assert lrs[0] == pytest.approx(base_lr * 0.001) and lrs[250] == pytest.approx(base_lr)
    first, second = 89 * epoch_length, 96 * epoch_length  # 8/9 and 26/27 of 100 epochs, rounded
    assert lrs[first - 1] == pytest.approx(base_lr) and lrs[first] == pytest.approx(base_lr * 0.1)
    assert lrs[second - 1] == pytest.approx(base_lr * 0.1) and lrs[-1] == pytest.approx(base_lr * 0.01)


def test_detectron2_schedule_is_the_same_curve(tmp_path):
    pytest.importorskip('detectron2', reason=DETECTRON2_MISSING)
    from detectron2.config import LazyConfig, instantiate
    from detectron2.solver import LRMultiplier
    for name in ('sami_ti_coco.py', 'sami_s_coco.py', 'sami_b_coco.py'):
        cfg = LazyConfig.load(os.path.join(D2_CONFIGS, name))
        assert cfg.optimizer.lr == 2e-4, name
        multiplier, iterations = instantiate(cfg.lr_multiplier), cfg.train.max_iter
        for step in range(0, iterations, 97):  # LRMultiplier's lr at iteration t: multiplier(t / max_iter)
            assert multiplier(step / iterations) == pytest.approx(paper_multiplier(step / iterations), abs=1e-10)
    smoke = LazyConfig.load(os.path.join(D2_CONFIGS, 'sami_ti_coco_smoke.py'))  # stepped as training steps it
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=smoke.optimizer.lr)
    scheduler = LRMultiplier(optimizer, instantiate(smoke.lr_multiplier), smoke.train.max_iter)
    for step in range(smoke.train.max_iter):
        expected = smoke.optimizer.lr * paper_multiplier(step / smoke.train.max_iter)
        assert optimizer.param_groups[0]['lr'] == pytest.approx(expected, abs=1e-12), step
        optimizer.step()
        scheduler.step()
    assert LazyConfig.load(os.path.join(D2_CONFIGS, 'sami_ti_coco.py')).train.max_iter == 184375

    step_cfg = LazyConfig.load(os.path.join(D2_CONFIGS, 'sami_ti_coco_step-lr.py'))
    multiplier, iterations = instantiate(step_cfg.lr_multiplier), step_cfg.train.max_iter
    assert step_cfg.optimizer.lr == 1e-4
    assert multiplier(0.0) == pytest.approx(0.001) and multiplier(250 / iterations) == 1.0
    assert multiplier(0.88) == 1.0 and multiplier(0.89) == pytest.approx(0.1)
    assert multiplier(0.96) == pytest.approx(0.1) and multiplier(0.97) == pytest.approx(0.01)


# 3. Initial weights: SAMI pretraining by default, the EfficientSAM encoder as a named variant.

@pytest.mark.parametrize('arch', ['ti', 's', 'b'])
def test_paper_configs_start_from_sami_pretraining(arch):
    assert mmdet_config_init(f'sami_{arch}_coco.py') == SAMI_CHECKPOINTS[arch]
    mask2former = Config.fromfile(os.path.join(MASK2FORMER_CONFIGS, f'sami_{arch}_ade20k.py'))
    assert mask2former.model.backbone.init_cfg.checkpoint == SAMI_CHECKPOINTS[arch]
    if arch != 'b':
        assert mmdet_config_init(f'sami_{arch}_coco_efficientsam-init.py') == f'zoo://efficientsam_{arch}'
    pytest.importorskip('detectron2', reason=DETECTRON2_MISSING)
    from detectron2.config import LazyConfig
    assert LazyConfig.load(os.path.join(D2_CONFIGS, f'sami_{arch}_coco.py')).train.init_checkpoint == \
        SAMI_CHECKPOINTS[arch]
    if arch != 'b':
        variant = LazyConfig.load(os.path.join(D2_CONFIGS, f'sami_{arch}_coco_efficientsam-init.py'))
        assert variant.train.init_checkpoint == f'zoo://efficientsam_{arch}'
        assert variant.model.backbone.net.arch == arch


def mmdet_config_init(name):
    return Config.fromfile(os.path.join(MMDET_CONFIGS, name)).model.backbone.init_cfg.checkpoint


def test_detectron2_launcher_refuses_a_missing_default_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip('detectron2', reason=DETECTRON2_MISSING)
    from efficientsam_plugins.detectron2 import launch
    monkeypatch.chdir(tmp_path)  # no work_dirs/ here
    with pytest.raises(FileNotFoundError, match='SAMI .*pretraining checkpoint.*_efficientsam-init'):
        launch.main([os.path.join(D2_CONFIGS, 'sami_ti_coco.py')])


# 4. Weight decay: none for norms, biases and position embeddings; relative-position tables decayed.

def weight_decay_expected(name, param, weight_decay):
    exempt = param.ndim == 1 or name.endswith('pos_embed')
    return 0.0 if exempt else weight_decay


def test_weight_decay_in_both_frameworks():
    from mmengine.optim import build_optim_wrapper
    cfg = mmdet_config('sami_ti_coco.py')
    cfg.optim_wrapper.type = 'OptimWrapper'
    model = build_mmdet(cfg)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    mm_groups = {id(p): g for g in optimizer.param_groups for p in g['params']}
    mm_named = dict(model.named_parameters())
    for name, param in mm_named.items():
        assert mm_groups[id(param)]['weight_decay'] == weight_decay_expected(name, param, 0.1), name
    for name in ('backbone.blocks.2.attn.rel_pos_h', 'backbone.blocks.0.attn.rel_pos_w'):
        assert mm_groups[id(mm_named[name])]['weight_decay'] == 0.1
    norms = [n for n in mm_named if n.startswith(('neck.', 'roi_head.', 'rpn_head.')) and mm_named[n].ndim == 1]
    assert norms and all(mm_groups[id(mm_named[n])]['weight_decay'] == 0 for n in norms)

    pytest.importorskip('detectron2', reason=DETECTRON2_MISSING)
    from detectron2.config import LazyConfig, instantiate
    d2_cfg = LazyConfig.load(os.path.join(D2_CONFIGS, 'sami_ti_coco.py'))
    d2_model = instantiate(d2_cfg.model)
    d2_cfg.optimizer.params.model = d2_model
    d2_groups = {id(p): g for g in instantiate(d2_cfg.optimizer).param_groups for p in g['params']}
    d2_named = dict(d2_model.named_parameters())
    for name, param in d2_named.items():
        assert d2_groups[id(param)]['weight_decay'] == weight_decay_expected(name, param, 0.1), name
    vit_names = [n[len('backbone.'):] for n in mm_named if n.startswith('backbone.')]
    assert vit_names
    for vit_name in vit_names:  # the same ViT parameter gets the same lr and weight decay in both
        mm_group = mm_groups[id(mm_named['backbone.' + vit_name])]
        d2_group = d2_groups[id(d2_named['backbone.net.' + vit_name])]
        assert mm_group['weight_decay'] == d2_group['weight_decay'], vit_name
        assert mm_group['lr'] == pytest.approx(d2_group['lr']), vit_name


# 5-6. Mask2Former: backbone lr x0.1 without layer decay (decay as a variant); sliding-window testing.

def mask2former_param_groups(name):
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    cfg = Config.fromfile(os.path.join(MASK2FORMER_CONFIGS, name))
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    groups = {id(p): g for g in optimizer.param_groups for p in g['params']}
    return {name: groups[id(param)] for name, param in model.named_parameters()}


def test_mask2former_backbone_lr_is_the_papers_multiplier_only():
    groups = mask2former_param_groups('sami_ti_ade20k.py')
    backbone_lr = 2e-4 * 0.1
    for name, group in groups.items():
        assert group['lr'] == pytest.approx(backbone_lr if name.startswith('backbone.') else 2e-4), name
    variant = mask2former_param_groups('sami_ti_ade20k_layer-decay.py')
    assert variant['backbone.blocks.11.mlp.fc1.weight']['lr'] == pytest.approx(backbone_lr * 0.9)
    assert variant['backbone.blocks.0.attn.qkv.weight']['lr'] == pytest.approx(backbone_lr * 0.9 ** 12)
    assert variant['decode_head.query_embed.weight']['lr'] == pytest.approx(2e-4)


def test_mask2former_tests_the_vit_on_its_training_grid():
    from mmseg.registry import DATASETS, MODELS
    cfg = Config.fromfile(os.path.join(MASK2FORMER_CONFIGS, 'sami_ti_ade20k.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.decode_head.update(  # a smaller head, for speed: the windows do not depend on it
        num_queries=10, pixel_decoder=dict(encoder=dict(num_layers=1)), transformer_decoder=dict(num_layers=3))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model).eval()
    grids = record_patch_grids(model.backbone)
    dataset_cfg = cfg.test_dataloader.dataset  # the config's own test pipeline, on a bundled image
    dataset_cfg.update(type='SAMICocoSemanticDataset', data_root=COCO_MINI + '/', reduce_zero_label=True,
                       data_prefix=dict(img_path='val2017', seg_map_path='semantic/val2017'))
    sample = DATASETS.build(dataset_cfg)[0]
    height, width = sample['data_samples'].ori_shape
    assert sample['inputs'].shape[-2:] == (512, round(width * 512 / height))  # 512x767: not square
    with torch.no_grad():
        result = model.test_step(pseudo_collate([sample]))[0]
    assert len(grids) == 2 and set(grids) == {(32, 32)}  # two overlapping 512x512 windows
    assert result.pred_sem_seg.data.shape[-2:] == (height, width)
