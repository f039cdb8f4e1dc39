"""Recipe fidelity of the zero-shot evaluation and the SA-1B finetuning, checked on built objects:
AP by size from mask areas, the click presets, the SAMI start of the paper config, iterative
prompts by default and the optional negative-click embedding."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from conftest import COCO_MINI

from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.evaluation import (
    ImageInfo,
    Instance,
    PromptProtocol,
    Segmentation,
    Segmenter,
    center_click,
    evaluate_image,
    evaluate_segmentation,
    load_detections,
    segment_detections,
)
from efficientsam_plugins.evaluation.dataset import InstanceDataset
from efficientsam_plugins.predictor import EfficientSamPredictor
from efficientsam_plugins.training.prompt_sampling import sample_error_clicks

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
TINY = dict(img_size=64, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32], dec_depth=2,
            dec_heads=2, dec_mlp_dim=64, upscaling=[16, 8], iou_head_hidden_dim=32)
NEGATIVE = dict(TINY, negative_points=True)


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- item 9: AP by object size ------------------------------------------------------------------

class FixedMasks(Segmenter):
    """Answers detection ``i`` with ``masks[i]``."""
    needs_image = False

    def __init__(self, masks):
        self.masks = masks

    def set_image(self, image, info):
        pass

    def segment(self, prompts):
        return Segmentation(np.stack([self.masks[k] for k in prompts.keys]), np.ones(len(prompts)))


def square(x, y, side, shape=(200, 200)):
    mask = np.zeros(shape, dtype=bool)
    mask[y:y + side, x:x + side] = True
    return mask


def test_ap_by_size_takes_the_mask_area_not_the_box_area(tmp_path):
    """One small object found (score 0.5) and a false positive ranked above it (score 0.9) whose
    mask is small (400 px) but whose detector box is large (100 x 100): it belongs to APs, which is
    therefore 0.5; taken by its box it would fall in the large range and APs would read 1.0."""
    from pycocotools import mask as mask_api
    gt = square(10, 10, 20)
    rle = mask_api.encode(np.asfortranarray(gt.astype(np.uint8)))
    ann = dict(info={}, images=[dict(id=1, width=200, height=200, file_name='a.jpg')],
               categories=[dict(id=1, name='thing')],
               annotations=[dict(id=1, image_id=1, category_id=1, iscrowd=0, area=400, bbox=[10, 10, 20, 20],
                                 segmentation=dict(size=[200, 200], counts=rle['counts'].decode()))])
    ann_file = tmp_path / 'gt.json'
    ann_file.write_text(json.dumps(ann))
    dets = [dict(image_id=1, category_id=1, bbox=[10, 10, 20, 20], score=0.5),
            dict(image_id=1, category_id=1, bbox=[90, 90, 100, 100], score=0.9)]
    (tmp_path / 'dets.json').write_text(json.dumps(dets))
    dataset = InstanceDataset(str(ann_file), str(tmp_path))
    results = segment_detections(dataset, FixedMasks({0: gt, 1: square(150, 150, 20)}),
                                 load_detections(str(tmp_path / 'dets.json'), dataset), progress=False)
    assert all('bbox' not in r for r in results)
    metrics = evaluate_segmentation(str(ann_file), results, 'coco')
    assert metrics['AP'] == pytest.approx(0.5) and metrics['APs'] == pytest.approx(0.5)
    assert metrics['APm'] == metrics['APl'] == -1.0  # no ground truth there
    with_boxes = [dict(r, bbox=d['bbox']) for r, d in zip(sorted(results, key=lambda r: r['score']), dets)]
    assert evaluate_segmentation(str(ann_file), with_boxes, 'coco')['APs'] == pytest.approx(0.5)


# --- item 10: the click presets -----------------------------------------------------------------

class HalfMask(Segmenter):
    """Answers every click round with the left half of the image plus a 10-pixel stripe at the
    bottom: it misses the right part of an object and adds a false positive."""
    needs_image = False

    def __init__(self, negative=False):
        self.supports_negative_points = negative
        self.batches = []

    def set_image(self, image, info):
        self.shape = (info.height, info.width)

    def segment(self, prompts):
        self.batches.append(prompts)
        mask = np.zeros(self.shape, dtype=bool)
        mask[:, :self.shape[1] // 2] = True
        mask[-10:] = True
        return Segmentation(np.repeat(mask[None], len(prompts), 0), np.ones(len(prompts)))


def instance_and_info():
    gt = np.zeros((80, 100), dtype=bool)
    gt[10:30, 40:70] = True
    return [Instance(5, 1, gt, int(gt.sum()))], ImageInfo(3, '', 100, 80), gt


def test_paper_preset_is_the_default_and_clicks_uniformly_in_the_mask():
    protocol = PromptProtocol()
    assert (protocol.name, protocol.click_protocol, protocol.later_clicks) == ('paper', 'random', 'random')
    instances, info, gt = instance_and_info()
    records = evaluate_image(HalfMask(), info, None, instances, PromptProtocol(box=False, clicks=(5,)))
    points = records[0]['prompt']['points']
    assert len(points) == 5 and records[0]['prompt']['labels'] == [1] * 5
    assert all(gt[int(y), int(x)] for x, y in points)
    assert any(x < 50 for x, _ in points[1:])  # not steered away from what the prediction already covers
    assert 'click protocol paper: first click random, later clicks random' in protocol.describe()
    custom = PromptProtocol(click_protocol='center')
    assert custom.name == 'custom' and custom.settings()['later_clicks'] == 'random'
    with pytest.raises(ValueError, match='unknown click preset'):
        PromptProtocol(preset='ritm')


def test_sam_preset_clicks_the_error_region_negative_where_the_model_can():
    instances, info, gt = instance_and_info()
    positive_only = evaluate_image(HalfMask(), info, None, instances, PromptProtocol(box=False, clicks=(2,),
                                                                                     preset='sam'))
    first, second = positive_only[0]['prompt']['points']
    assert tuple(first) == center_click(gt)
    assert second[0] >= 50 and gt[int(second[1]), int(second[0])]  # centre of the missed right part
    assert positive_only[0]['prompt']['labels'] == [1, 1]
    # The false positives (the left half below the object: 50 x 50) reach farther from their
    # boundary than the missed part (20 x 20): the next click is negative there.
    segmenter = HalfMask(negative=True)
    records = evaluate_image(segmenter, info, None, instances, PromptProtocol(box=False, clicks=(2,), preset='sam'))
    (x, y) = records[0]['prompt']['points'][1]
    assert records[0]['prompt']['labels'] == [1, 0] and not gt[int(y), int(x)] and x < 50
    np.testing.assert_array_equal(segmenter.batches[-1].labels, [[1, 0]])
    with pytest.raises(ValueError, match='no negative-click input'):
        evaluate_image(HalfMask(), info, None, instances, PromptProtocol(box=False, preset='sam',
                                                                         negative_clicks=True))


@pytest.fixture(scope='module')
def negative_checkpoint(tmp_path_factory):
    from efficientsam_plugins.convert import save_official_efficientsam
    torch.manual_seed(0)
    model = build_efficient_sam(NEGATIVE)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    path = str(tmp_path_factory.mktemp('negative') / 'negative.pt')
    return save_official_efficientsam(model.state_dict(), path, NEGATIVE)


def test_tool_prints_and_records_the_protocol(negative_checkpoint, tmp_path, capsys):
    tool = load_tool('eval_promptable')
    common = ['--ann-file', os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json'),
              '--img-dir', os.path.join(COCO_MINI, 'val2017'), '--checkpoint', negative_checkpoint,
              '--model', negative_checkpoint.replace('.pt', '.config.json'), '--max-images', '1',
              '--prompts', '1', '3', '--no-progress']
    assert tool.main([*common, '--out', str(tmp_path / 'paper.json')]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith('click protocol paper: first click random')
    settings = json.loads((tmp_path / 'paper.json').read_text())['settings']
    assert (settings['protocol'], settings['click_protocol'], settings['later_clicks']) == ('paper', 'random', 'random')
    assert tool.main([*common, '--protocol', 'sam', '--out', str(tmp_path / 'sam.json'),
                      '--dump-predictions', str(tmp_path / 'dump.json')]) == 0
    assert 'click protocol sam: first click center, later clicks error, negative clicks on' in capsys.readouterr().out
    settings = json.loads((tmp_path / 'sam.json').read_text())['settings']
    assert (settings['protocol'], settings['negative_clicks']) == ('sam', True)
    labels = {lbl for r in json.loads((tmp_path / 'dump.json').read_text())['predictions']
              for lbl in r['prompt']['labels']}
    assert labels <= {0, 1}


# --- item 12: negative-click embedding and iterative prompts -----------------------------------------

def test_negative_click_embedding_is_optional_and_keeps_released_keys():
    plain, negative = build_efficient_sam(TINY), build_efficient_sam(NEGATIVE)
    assert set(negative.state_dict()) - set(plain.state_dict()) == {'prompt_encoder.negative_point_embeddings.weight'}
    assert not any('negative' in k for k in plain.state_dict())
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    predictor = EfficientSamPredictor(plain)
    predictor.set_image(image)
    with pytest.raises(ValueError, match='negative points \\(0\\) need a model built'):
        predictor.predict(points=[[10, 10], [30, 20]], point_labels=[1, 0])
    predictor = EfficientSamPredictor(negative)
    assert predictor.supports_negative_points and not EfficientSamPredictor(plain).supports_negative_points
    predictor.set_image(image)
    _, iou_negative, low_negative = predictor.predict(points=[[10, 10], [30, 20]], point_labels=[1, 0])
    _, _, low_positive = predictor.predict(points=[[10, 10], [30, 20]], point_labels=[1, 1])
    assert np.isfinite(iou_negative).all() and not np.allclose(low_negative, low_positive)
    with torch.no_grad():  # the negative label adds exactly its own embedding
        coords = torch.tensor([[[10.0, 10.0]]])
        delta = (negative.prompt_encoder(coords, torch.zeros(1, 1))
                 - negative.prompt_encoder(coords, torch.full((1, 1), 5.0)))
    torch.testing.assert_close(delta[0, 0], negative.prompt_encoder.negative_point_embeddings.weight[0])


def test_error_clicks_with_negatives_follow_sam():
    gt = torch.zeros(2, 16, 16, dtype=torch.bool)
    gt[:, 4:12, 4:12] = True
    pred = gt.clone()
    pred[0] = True  # only false positives
    pred[1, 4:12, 8:12] = False  # only false negatives
    points, labels = sample_error_clicks(pred, gt, 64, torch.Generator().manual_seed(0), negative=True)
    assert labels[:, 0].tolist() == [0.0, 1.0]
    (x0, y0), (x1, y1) = (points[:, 0] // 4).long().tolist()
    assert not gt[0, y0, x0] and gt[1, y1, x1] and not pred[1, y1, x1]


def test_iterative_clicks_by_default_and_negative_clicks_are_trained(tmp_path):
    pytest.importorskip('mmengine')
    from efficientsam_plugins.convert import load_exported, save_official_efficientsam
    from efficientsam_plugins.openmmlab.efficientsam import EfficientSamFinetuner
    assert EfficientSamFinetuner(TINY).num_iterative_clicks == 4  # decoder from scratch
    released = save_official_efficientsam(build_efficient_sam(TINY).state_dict(), str(tmp_path / 'released.pt'))
    assert EfficientSamFinetuner(TINY, checkpoint=released).num_iterative_clicks == 0
    assert EfficientSamFinetuner(TINY, decoder_init=dict(checkpoint=released)).num_iterative_clicks == 0
    with pytest.raises(ValueError, match='negative_points needs num_iterative_clicks >= 1'):
        EfficientSamFinetuner(NEGATIVE, checkpoint=released, num_iterative_clicks=0)
    finetuner = EfficientSamFinetuner(NEGATIVE, checkpoint=released)  # how a user adds negative clicks
    assert finetuner.num_iterative_clicks == 4 and finetuner.negative_clicks
    before = finetuner.model.prompt_encoder.negative_point_embeddings.weight.clone()
    finetuner.init_weights()  # strict, except the one new embedding
    torch.testing.assert_close(finetuner.model.prompt_encoder.negative_point_embeddings.weight, before)
    torch.testing.assert_close(finetuner.model.mask_decoder.iou_token.weight,
                               torch.load(released, weights_only=True)['model']['mask_decoder.iou_token.weight'])
    torch.manual_seed(0)
    masks = torch.zeros(4, 16, 16, dtype=torch.bool)
    masks[:, 3:9, 2:12] = True
    losses = finetuner.loss(torch.rand(1, 3, 64, 64), [dict(gt_masks=masks)])
    (losses['loss_focal'] + losses['loss_dice'] + losses['loss_iou']).backward()
    assert finetuner.model.prompt_encoder.negative_point_embeddings.weight.grad.abs().sum() > 0
    exported = save_official_efficientsam(finetuner.model.state_dict(), str(tmp_path / 'ft.pt'), finetuner.model_config)
    assert EfficientSamPredictor(load_exported(exported)).supports_negative_points


# --- item 11: the SAMI start ---------------------------------------------------------------------

@pytest.fixture(scope='session')
def sami_smoke_checkpoint(tmp_path_factory):
    """The checkpoint of two iterations of the real SAMI ViT-Ti smoke config (tiny random teacher)."""
    pytest.importorskip('mmpretrain')
    pytest.importorskip('segment_anything')
    from test_sami_core import save_tiny_sam
    from test_sami_mmpretrain import SMOKE_TEACHER
    folder = tmp_path_factory.mktemp('sami_smoke')
    teacher = folder / 'teacher.pth'
    save_tiny_sam(teacher, SMOKE_TEACHER)
    config = os.path.join(REPO, 'configs', 'sami', 'sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py')
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        load_tool('train').main([config, '--work-dir', str(folder), '--cfg-options', 'train_cfg.max_iters=2',
                                 'default_hooks.checkpoint.interval=2', f'model.target_generator.checkpoint={teacher}',
                                 f'train_dataloader.dataset.data_root={COCO_MINI}',
                                 'experiment_name=sami_for_efficientsam_start'])
    finally:
        os.chdir(cwd)
    return str(folder / 'iter_2.pth')


def test_paper_config_starts_from_a_sami_run(sami_smoke_checkpoint):
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import efficientsam_plugins.openmmlab.efficientsam  # noqa: F401  (registers the finetuner)
    sami = torch.load(sami_smoke_checkpoint, weights_only=False)['state_dict']
    assert 'backbone.norm.weight' in sami and not any(k.startswith('backbone.neck.') for k in sami)
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'efficientsam', 'efficientsam_ti_sa1b.py'))
    cfg.model.encoder_init.checkpoint = sami_smoke_checkpoint
    cfg.model.model_config = dict(img_size=64)  # the paper's ViT-Ti at a small input, to train a step fast
    model = MODELS.build(cfg.model)
    neck = model.model.image_encoder.neck[0].weight.clone()
    model.init_weights()
    encoder = model.model.image_encoder.state_dict()
    for key in ('patch_embed.proj.weight', 'pos_embed', 'blocks.11.mlp.fc2.weight', 'blocks.0.attn.qkv.bias'):
        assert torch.equal(encoder[key], sami[f'backbone.{key}']), key
    assert model.model.image_encoder.norm is None and torch.equal(encoder['neck.0.weight'], neck)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 2:10, 3:14] = True
    losses = model.loss(torch.rand(1, 3, 64, 64), [dict(gt_masks=masks)])
    assert all(torch.isfinite(v) for v in losses.values())
