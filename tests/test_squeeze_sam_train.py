"""SqueezeSAM training through mmengine: the smoke config's loss falls, its export loads in
SqueezeSamPredictor, a resumed run continues with the same losses; distillation from a frozen
teacher (EfficientSAM or segment_anything's SAM), its embedding cache, and the generalised
training round."""
import json
import os

import numpy as np
import pytest
import torch
from conftest import EFFICIENTSAM_TINY

mmengine = pytest.importorskip('mmengine')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SMOKE_CONFIG = os.path.join(REPO, 'configs', 'squeezesam', 'squeezesam_sa1b_smoke.py')
ITERS, HALF = 24, 12
TINY_SQUEEZE = dict(encoder_image_size=64, encoder_patch_size=2, encoder_patch_embed_dim=8,
                    encoder_unet_conv_dims=[8, 8, 16], decoder_transformer_depth=1, decoder_transformer_mlp_dim=16,
                    decoder_num_heads=2, iou_head_hidden_dim=8, negative_click_channel=True,
                    previous_mask_channel=True)


def train(work_dir, resume_from=None):
    """The smoke config for ITERS iterations (its lr schedule unchanged), checkpoints every HALF;
    returns the per-iteration losses of this run."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = ITERS
    cfg.default_hooks.checkpoint.update(interval=HALF, max_keep_ckpts=2)
    cfg.val_dataloader.dataset.max_images = 1
    cfg.experiment_name = f'squeezesam_test_{os.path.basename(str(work_dir))}'
    if resume_from:
        cfg.resume, cfg.load_from = True, str(resume_from)
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(REPO)  # the config's data paths are relative to the repository, like tools/train.py runs
    torch.set_num_threads(1)  # tiny ops: a second thread on a shared machine only waits
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return runner.message_hub.get_scalar('train/loss').data[0]


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('squeezesam_smoke')
    return work_dir, train(work_dir)


def test_smoke_training_decreases_the_loss(smoke_run):
    _, losses = smoke_run
    assert len(losses) == ITERS and np.isfinite(losses).all()
    assert losses[-6:].mean() < 0.8 * losses[:6].mean(), losses


def test_exported_checkpoint_loads_in_the_predictor(smoke_run):
    from efficientsam_plugins.build import build_squeeze_sam
    from efficientsam_plugins.predictor import SqueezeSamPredictor
    work_dir, _ = smoke_run
    path = work_dir / 'squeezesam_smoke.pt'
    state = torch.load(path, weights_only=True)
    assert list(state) == ['model'] and not any('teacher' in k for k in state['model'])
    config = json.loads((work_dir / 'squeezesam_smoke.config.json').read_text())
    assert config['negative_click_channel'] and config['previous_mask_channel']
    predictor = SqueezeSamPredictor(build_squeeze_sam(config, str(path)))
    predictor.set_image(np.zeros((60, 80, 3), dtype=np.uint8))
    masks, iou, _ = predictor.predict(points=[[20, 30], [50, 10]], point_labels=[1, 0])
    assert masks.shape == (1, 3, 60, 80) and np.isfinite(iou).all()


def test_resumed_run_continues_with_the_same_losses(smoke_run, tmp_path):
    work_dir, uninterrupted = smoke_run
    continued = train(tmp_path / 'resumed', resume_from=work_dir / f'iter_{HALF}.pth')
    np.testing.assert_allclose(continued[-(ITERS - HALF):], uninterrupted[HALF:], rtol=1e-5, atol=1e-6)


def tiny_efficientsam_teacher():
    config = {k: v for k, v in json.load(open(os.path.join(EFFICIENTSAM_TINY, 'reference.json')))['config'].items()
              if k != 'seed'}
    return dict(kind='efficientsam', config=config, checkpoint=os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'))


def batch(num_images=2, queries=3, size=64, mask_size=32):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 255, (num_images, 3, size, size), dtype=torch.uint8, generator=generator)
    samples = []
    for b in range(num_images):
        masks = torch.zeros(queries, mask_size, mask_size, dtype=torch.bool)
        for q in range(queries):
            masks[q, 4 * q:4 * q + 10, 3 + 5 * q:15 + 5 * q] = True
        samples.append(dict(gt_masks=masks, click_masks=masks, img_path=f'img{b}.jpg', crop_box=(0, 0, 9, 9),
                            outlier_points=torch.tensor([[[60.0, 60.0], [-1.0, -1.0]]]).repeat(queries, 1, 1),
                            outlier_valid=torch.tensor([[True, False]]).repeat(queries, 1)))
    return dict(inputs=list(inputs), data_samples=samples)


def test_distillation_teacher_is_frozen_outside_checkpoints_and_cached(tmp_path):
    import efficientsam_plugins.openmmlab.squeezesam  # noqa: F401
    from efficientsam_plugins.openmmlab.squeezesam import SqueezeSamTrainer
    teacher = dict(tiny_efficientsam_teacher(), weight=0.5, cache_dir=str(tmp_path / 'cache'))
    model = SqueezeSamTrainer(TINY_SQUEEZE, num_iterative_clicks=1, teacher=teacher)
    assert not any('teacher' in k or 'image_encoder' in k for k in model.state_dict())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.model.parameters())
    data = model.data_preprocessor(batch(), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    cached = sorted(f for f in os.listdir(tmp_path / 'cache' / 'shards') if f.endswith('.safetensors'))
    assert len(cached) == 2  # one embedding per image view
    model.teacher.embed = None  # a second step must read the cache, not run the encoder
    assert torch.isfinite(model(**data, mode='loss')['loss_focal'])
    model.train()
    assert not model.teacher.training
    with pytest.raises(ValueError, match='made for'):
        SqueezeSamTrainer(TINY_SQUEEZE, teacher=dict(teacher, config=dict(teacher['config'], depth=1),
                                                     checkpoint=None))


def test_teacher_that_returns_the_ground_truth_changes_nothing():
    from efficientsam_plugins.build import build_squeeze_sam
    from efficientsam_plugins.openmmlab.squeezesam import squeeze_sam_decoder
    from efficientsam_plugins.training.sam_round import training_round
    model = build_squeeze_sam(TINY_SQUEEZE).train()
    images = torch.rand(2, 3, 64, 64)
    masks = [s['gt_masks'] for s in batch()['data_samples']]

    def run(**kwargs):
        torch.manual_seed(0)
        return training_round(squeeze_sam_decoder(model, images), masks, 64, 0.5, 2,
                              generator=torch.Generator().manual_seed(3), negative_clicks=True,
                              feed_previous_masks=True, **kwargs)
    plain = run()
    distilled = run(teacher=lambda points, labels: torch.cat(masks), teacher_weight=1.0)
    for key in plain:
        torch.testing.assert_close(distilled[key], plain[key])
    with pytest.raises(ValueError, match='teacher_weight'):
        run(teacher=lambda points, labels: torch.cat(masks), teacher_weight=2.0)


def test_first_click_lies_on_the_click_mask_and_boxes_on_the_target():
    from efficientsam_plugins.training.prompt_sampling import sample_prompts
    target = torch.zeros(200, 16, 16, dtype=torch.bool)
    target[:, 2:14, 2:14] = True
    part = torch.zeros_like(target)
    part[:, 2:5, 2:5] = True
    coords, labels = sample_prompts(target, 64, 0.5, torch.Generator().manual_seed(0), click_masks=part)
    is_point = labels[:, 0] == 1
    cells = (coords[is_point, 0] // 4).long()
    assert part[0, cells[:, 1], cells[:, 0]].all()
    boxes = coords[~is_point].flatten(1)
    assert (boxes[:, 2] - boxes[:, 0]).mean() > 30  # the target's box (48 px), not the part's (12 px)


def test_segment_anything_teacher_decodes_points_and_boxes():
    pytest.importorskip('segment_anything')
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from efficientsam_plugins.training.teachers import SegmentAnythingMaskTeacher, bind_teacher
    torch.manual_seed(0)
    sam = Sam(ImageEncoderViT(img_size=64, patch_size=16, embed_dim=16, depth=1, num_heads=2, out_chans=16),
              PromptEncoder(embed_dim=16, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=4),
              MaskDecoder(transformer_dim=16, transformer=TwoWayTransformer(depth=1, embedding_dim=16, num_heads=2,
                                                                            mlp_dim=32),
                          iou_head_hidden_dim=16))
    teacher = SegmentAnythingMaskTeacher(sam)
    points = torch.tensor([[[4.0, 4.0], [40.0, 50.0], [20.0, 20.0]], [[30.0, 30.0], [-1.0, -1.0], [10.0, 5.0]]])
    labels = torch.tensor([[2.0, 3.0, 1.0], [1.0, -1.0, 0.0]])
    targets = bind_teacher(teacher, torch.rand(1, 3, 32, 32), 32, 16)([points], [labels])
    assert targets.shape == (2, 16, 16) and targets.dtype == torch.bool
    with pytest.raises(ValueError, match='teacher kind'):
        from efficientsam_plugins.training.teachers import build_mask_teacher
        build_mask_teacher('mobile_sam')
