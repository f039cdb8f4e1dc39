"""Finetuning parts: SAM's loss, prompt sampling, the SA-1B/COCO reader, weight initialisation
and the official-layout export."""
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

from efficientsam_plugins.build import build_efficient_sam  # noqa: E402
from efficientsam_plugins.convert import convert_checkpoint, load_exported, save_official_efficientsam  # noqa: E402
from efficientsam_plugins.openmmlab.efficientsam import (  # noqa: E402
    EfficientSamFinetuner,
    SA1BDataset,
    efficientsam_collate,
)
from efficientsam_plugins.training.losses import binary_mask_iou, dice_loss, sam_loss, sigmoid_focal_loss  # noqa: E402
from efficientsam_plugins.training.prompt_sampling import (  # noqa: E402
    jitter_boxes,
    mask_boxes,
    sample_error_clicks,
    sample_prompts,
)
from efficientsam_plugins.training.sam_round import training_round  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
COCO_MINI = os.path.join(REPO, 'data', 'coco_mini')
TINY = dict(img_size=256, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32], dec_depth=2,
            dec_heads=2, dec_mlp_dim=64, upscaling=[16, 8], iou_head_hidden_dim=32)


def test_loss_backpropagates_only_the_best_candidate():
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    good = (target * 2 - 1) * 10
    logits = torch.stack([torch.randn(2, 8, 8), good, -good], 1).requires_grad_()
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    losses = sam_loss(logits, iou_pred, target)
    assert losses['mask_iou'] == 1.0
    assert losses['loss_focal'] < 1e-3 and losses['loss_dice'] < 1e-3
    expected_iou = binary_mask_iou(logits.detach(), target[:, None].expand(-1, 3, -1, -1))
    assert losses['loss_iou'].item() == pytest.approx(((0.5 - expected_iou) ** 2).mean().item())
    (losses['loss_focal'] + losses['loss_dice']).backward()
    grad_per_candidate = logits.grad.abs().flatten(2).sum(-1)
    assert (grad_per_candidate[:, [0, 2]] == 0).all() and (grad_per_candidate[:, 1] > 0).all()
    ratio = sam_loss(logits, iou_pred, target, focal_weight=1.0)['loss_focal'] / losses['loss_focal']
    assert ratio.item() == pytest.approx(1 / 20)


def test_focal_and_dice_basics():
    target = torch.zeros(16, 16)
    target[4:12, 4:12] = 1
    assert sigmoid_focal_loss(target * 20 - 10, target) < 1e-5 < sigmoid_focal_loss(torch.zeros(16, 16), target)
    assert dice_loss(target * 20 - 10, target) < 1e-3
    assert dice_loss(-target * 20 + 10, target) > 0.99


@pytest.mark.parametrize('alpha,gamma', [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0)])
def test_focal_loss_is_the_hand_written_one(alpha, gamma):
    """torchvision's focal loss, averaged per mask, equals the formula this package used to write out."""
    torch.manual_seed(0)
    logits, targets = torch.randn(4, 3, 16, 16) * 4, (torch.rand(4, 3, 16, 16) > 0.5).float()
    prob = logits.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha, gamma), loss.flatten(-2).mean(-1),
                               rtol=1e-6, atol=1e-7)


def test_training_round_takes_any_decoder():
    """The round needs only a decode function (SqueezeSAM's has no image embedding): each extra round
    adds one click per query, and every round's loss counts."""
    masks = [torch.zeros(q, 16, 16, dtype=torch.bool) for q in (2, 1)]
    for m in masks:
        m[:, 4:12, 3:9] = True
    seen = []

    def decode(points, labels):
        seen.append([tuple(p.shape) for p in points])
        assert [tuple(lbl.shape) for lbl in labels] == [s[:2] for s in seen[-1]]
        logits = torch.zeros(3, 3, 16, 16, requires_grad=True)
        return logits, torch.full((3, 3), 0.5)

    losses = training_round(decode, masks, 64, num_iterative_clicks=2, generator=torch.Generator().manual_seed(0))
    assert seen == [[(2, 2, 2), (1, 2, 2)], [(2, 3, 2), (1, 3, 2)], [(2, 4, 2), (1, 4, 2)]]
    assert set(losses) == {'loss_focal', 'loss_dice', 'loss_iou', 'mask_iou'}
    expected = sam_loss(torch.zeros(3, 3, 16, 16), torch.full((3, 3), 0.5), torch.cat(masks))
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value)
    with pytest.raises(ValueError, match="set the dataset's mask_size to 16"):
        training_round(decode, [torch.ones(3, 8, 8, dtype=torch.bool)], 64)


def test_prompt_sampling_follows_sam():
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(400, 64, 64, dtype=torch.bool)
    masks[:, 10:50, 20:40] = True
    masks[:200, 30:35, 0:5] = True
    coords, labels = sample_prompts(masks, 256, generator=gen)
    is_box = labels[:, 0] == 2
    assert 150 < is_box.sum() < 250  # box or point with equal probability
    assert (labels[is_box] == torch.tensor([2.0, 3.0])).all()
    assert (labels[~is_box] == torch.tensor([1.0, -1.0])).all()
    points = coords[~is_box, 0].long()
    assert masks[~is_box][torch.arange(len(points)), points[:, 1] // 4, points[:, 0] // 4].all()
    assert (coords[~is_box, 1] == -1).all()
    tight = mask_boxes(masks[-1:], 4)[0]
    assert tight.tolist() == [80.0, 40.0, 160.0, 200.0]
    big = torch.tensor([[100.0, 100.0, 900.0, 900.0]]).repeat(2000, 1)
    shift = jitter_boxes(big, 1024, generator=gen) - big
    assert shift.abs().max() <= 20 + 1e-4 and (shift.abs() == 20).float().mean() > 0.5  # capped at 20 px
    small = torch.tensor([[100.0, 100.0, 150.0, 120.0]]).repeat(4000, 1)
    shift = jitter_boxes(small, 1024, generator=gen) - small
    assert shift[:, 0].std().item() == pytest.approx(5.0, rel=0.1)  # 10% of the 50 px width
    assert shift[:, 1].std().item() == pytest.approx(2.0, rel=0.1)  # 10% of the 20 px height


def test_error_clicks_are_positive_and_inside_the_missed_region():
    gt = torch.zeros(3, 16, 16, dtype=torch.bool)
    gt[:, 4:12, 4:12] = True
    pred = gt.clone()
    pred[0, 4:12, 8:12] = False  # misses the right half
    pred[1] |= True  # covers everything (only false positives)
    points, labels = sample_error_clicks(pred, gt, 64, torch.Generator().manual_seed(1))
    assert labels[:, 0].tolist() == [1.0, -1.0, -1.0]  # nothing missed: padding, never a negative click
    x, y = (points[0, 0] // 4).long().tolist()
    assert gt[0, y, x] and not pred[0, y, x]


def write_sa1b_folder(folder, count=2):
    """SA-1B layout (sa_N.jpg + sa_N.json with RLE masks) made from the bundled COCO images."""
    from efficientsam_plugins.evaluation import InstanceDataset, encode_mask
    dataset = InstanceDataset(os.path.join(COCO_MINI, 'annotations', 'instances_train2017.json'),
                              os.path.join(COCO_MINI, 'train2017'))
    os.makedirs(folder, exist_ok=True)
    for n, image_id in enumerate(dataset.image_ids[:count], start=1):
        info = dataset.images[image_id]
        os.symlink(info.path, os.path.join(folder, f'sa_{n}.jpg'))
        anns = [dict(id=inst.annotation_id, segmentation=encode_mask(inst.mask), area=inst.area,
                     bbox=[0, 0, 1, 1], predicted_iou=0.9, stability_score=0.9)
                for inst in dataset.instances(image_id)[0]]
        with open(os.path.join(folder, f'sa_{n}.json'), 'w') as f:
            json.dump(dict(image=dict(image_id=n, width=info.width, height=info.height, file_name=f'sa_{n}.jpg'),
                           annotations=anns), f)
    return folder


def test_sa1b_and_coco_readers(tmp_path):
    folder = write_sa1b_folder(str(tmp_path / 'sa1b'))
    sa1b = SA1BDataset(data_root=folder, img_size=128, max_masks_per_image=3)
    assert len(sa1b) == 2 and sa1b.source == 'sa1b'
    sample = sa1b[0]
    assert sample['inputs'].shape == (3, 128, 128) and sample['inputs'].dtype == torch.uint8
    masks = sample['data_samples']['gt_masks']
    assert masks.dtype == torch.bool and masks.shape[1:] == (32, 32) and 1 <= len(masks) <= 3
    assert masks.flatten(1).any(1).all()
    evaluation = SA1BDataset(data_root=folder, img_size=None)[1]
    h, w = evaluation['data_samples']['ori_shape']
    assert evaluation['inputs'].shape == (3, h, w)
    assert evaluation['data_samples']['gt_masks'].shape[1:] == (h, w)
    assert len(evaluation['data_samples']['annotation_ids']) == len(evaluation['data_samples']['gt_masks'])
    coco = SA1BDataset(ann_file=os.path.join(COCO_MINI, 'annotations', 'instances_train2017.json'),
                       img_dir=os.path.join(COCO_MINI, 'train2017'), img_size=64)
    batch = efficientsam_collate([coco[0], coco[1]])
    assert len(batch['inputs']) == 2 and batch['data_samples'][1]['gt_masks'].shape[1:] == (16, 16)


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='SA-1B folder not found'):
        SA1BDataset(data_root=str(tmp_path / 'nothing'))
    with pytest.raises(ValueError, match='either data_root'):
        SA1BDataset()
    folder = write_sa1b_folder(str(tmp_path / 'sa1b'), count=1)
    os.remove(os.path.join(folder, 'sa_1.jpg'))
    with pytest.raises(FileNotFoundError, match='has no image'):
        SA1BDataset(data_root=folder)
    with open(os.path.join(folder, 'sa_1.jpg'), 'wb') as f:
        f.write(b'\x00broken')
    with pytest.raises(ValueError, match='cannot read image .*sa_1.jpg'):
        SA1BDataset(data_root=folder, img_size=64)[0]


def fake_mmengine_checkpoint(path, state, prefix):
    """Like an mmengine/mmpretrain checkpoint: weights under ``state_dict`` plus a message hub
    holding numpy and mmengine objects (which ``weights_only`` loading refuses)."""
    from mmengine.logging import HistoryBuffer
    torch.save(dict(meta=dict(epoch=1, seed=np.int64(3)),
                    state_dict={prefix + k: v for k, v in state.items()},
                    message_hub=dict(log_scalars={'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])},
                                     runtime_info={'arr': np.ones(3)})), path)


def test_encoder_and_decoder_initialisation(tmp_path):
    source = build_efficient_sam(TINY)
    encoder_state = {k: v + 1 for k, v in source.image_encoder.state_dict().items() if not k.startswith('neck.')}
    fake_mmengine_checkpoint(str(tmp_path / 'sami.pth'), encoder_state, 'backbone.')
    save_official_efficientsam(source.state_dict(), str(tmp_path / 'esam.pt'))
    sami = str(tmp_path / 'sami.pth')
    model = EfficientSamFinetuner(TINY,
                                  encoder_init=dict(checkpoint=sami, prefix='backbone.', allow_missing=('neck.',)),
                                  decoder_init=dict(checkpoint=str(tmp_path / 'esam.pt')))
    neck_before = model.model.image_encoder.neck[0].weight.clone()
    model.init_weights()
    assert torch.equal(model.model.image_encoder.blocks[0].attn.qkv.weight,
                       source.image_encoder.blocks[0].attn.qkv.weight + 1)
    assert torch.equal(model.model.image_encoder.neck[0].weight, neck_before)
    assert torch.equal(model.model.mask_decoder.iou_token.weight, source.mask_decoder.iou_token.weight)
    no_neck = EfficientSamFinetuner(TINY, encoder_init=dict(checkpoint=sami, prefix='backbone.'))
    no_neck.init_weights()  # an encoder pretrained without a neck: the neck is trained from scratch
    assert torch.equal(no_neck.model.image_encoder.patch_embed.proj.weight,
                       source.image_encoder.patch_embed.proj.weight + 1)
    partial = dict(encoder_state, **{'neck.0.weight': source.image_encoder.neck[0].weight})
    fake_mmengine_checkpoint(str(tmp_path / 'partial.pth'), partial, 'backbone.')
    strict = EfficientSamFinetuner(TINY, encoder_init=dict(checkpoint=str(tmp_path / 'partial.pth'),
                                                           prefix='backbone.'))
    with pytest.raises(ValueError, match=r'missing keys \(neck\.1\.weight'):
        strict.init_weights()
    wrong_prefix = EfficientSamFinetuner(TINY, encoder_init=dict(checkpoint=sami, prefix='image_encoder.'))
    with pytest.raises(ValueError, match="no keys under prefix 'image_encoder.'"):
        wrong_prefix.init_weights()
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        EfficientSamFinetuner(TINY, checkpoint=str(tmp_path / 'none.pt')).init_weights()


def test_export_layout_and_conversion(tmp_path):
    finetuner = EfficientSamFinetuner(TINY)
    path = save_official_efficientsam(finetuner.model.state_dict(), str(tmp_path / 'out.pt'), finetuner.model_config)
    saved = torch.load(path, weights_only=True)
    assert list(saved) == ['model'] and set(saved['model']) == set(finetuner.model.state_dict())
    build_efficient_sam(TINY, path)  # strict load
    assert isinstance(load_exported(path), type(finetuner.model))
    fake_mmengine_checkpoint(str(tmp_path / 'iter_10.pth'), finetuner.model.state_dict(), 'model.')
    converted = str(tmp_path / 'conv.pt')  # tools/convert_checkpoint.py official iter_10.pth conv.pt --config
    assert convert_checkpoint(str(tmp_path / 'iter_10.pth'), converted, 'official', TINY) == len(saved['model'])
    converted_state = torch.load(converted, weights_only=True)['model']
    assert all(torch.equal(converted_state[k], v) for k, v in saved['model'].items())
    assert isinstance(load_exported(converted), type(finetuner.model))  # with its .config.json
    with pytest.raises(ValueError, match='does not match EfficientSam: shape mismatches'):
        convert_checkpoint(str(tmp_path / 'iter_10.pth'), str(tmp_path / 'bad.pt'), 'official', 'ti')
    fake_mmengine_checkpoint(str(tmp_path / 'sami.pth'), finetuner.model.image_encoder.state_dict(), 'backbone.')
    with pytest.raises(ValueError, match='not an EfficientSAM checkpoint'):
        convert_checkpoint(str(tmp_path / 'sami.pth'), str(tmp_path / 'bad.pt'), 'official')
    assert not (tmp_path / 'bad.pt').exists()


@pytest.mark.parametrize('arch,width', [('ti', 192), ('s', 384)])
def test_full_configs_follow_the_paper_recipe(arch, width):
    from mmengine.config import Config
    from mmengine.registry import MODELS
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'efficientsam', f'efficientsam_{arch}_sa1b.py'))
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.1)
    assert cfg.param_scheduler[0].type == 'LinearLR' and cfg.param_scheduler[0].end_factor == 0.0
    assert cfg.train_cfg.max_epochs == 5 and cfg.auto_scale_lr.base_batch_size == 128
    assert cfg.train_dataloader.dataset.img_size == 1024
    sami_run = {'ti': 'sami_vit-tiny', 's': 'sami_vit-small'}[arch]
    assert cfg.model.encoder_init == dict(checkpoint=f'work_dirs/{sami_run}_sam-vit-h_in1k-400e/epoch_400.pth',
                                          prefix='backbone.')  # the paper's start: a SAMI run
    model = MODELS.build(cfg.model)  # weights are loaded by init_weights, when training starts
    assert model.model.image_encoder.embed_dim == width and model.model.img_size == 1024
    assert model.num_iterative_clicks == 4 and not model.negative_clicks  # decoder from scratch: SAM's clicks
    assert model.eval_protocol.name == 'paper'
    released = MODELS.build(Config.fromfile(os.path.join(
        REPO, 'configs', 'efficientsam', f'efficientsam_{arch}_sa1b_from_released.py')).model)
    assert released.encoder_init == dict(checkpoint=f'efficientsam_{arch}', prefix='image_encoder.')
    assert released.num_iterative_clicks == 4
