"""Segment everything: the generic helpers against ``segment_anything.utils.amg``, the generator
against SAM's own generator on the same backend, its records, batching and memory behaviour, and
``tools/segment_everything.py``."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import EFFICIENTSAM_TINY, REPO_ROOT
from PIL import Image
from torchvision.ops import box_iou

from efficientsam_plugins import mask_generation as mg
from efficientsam_plugins.automatic_mask_generator import AutomaticMaskGenerator
from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.cli import run_tool
from efficientsam_plugins.predictor import Predictor

amg = pytest.importorskip('segment_anything.utils.amg')
TINY_CONFIG = json.load(open(os.path.join(EFFICIENTSAM_TINY, 'reference.json')))['config']
# Random weights: SAM's thresholds would keep nothing, so the tests relax them.
RELAXED = dict(pred_iou_thresh=0.0, stability_score_offset=0.1, stability_score_thresh=0.5)
SAM_FIELDS = {'segmentation', 'area', 'bbox', 'predicted_iou', 'point_coords', 'stability_score', 'crop_box'}


class DiscPredictor(Predictor):
    """A backend whose 3 candidates for a point are discs of 3 radii around it (a box prompt: one
    disc filling the box), at a 40x40 low resolution, with an IoU prediction that varies by point,
    so the generator has many distinct, overlapping masks to filter and de-duplicate."""

    max_points_per_query = 6
    low_res = 40

    def __init__(self):
        super().__init__()
        self.upsampled = []  # masks per upsample call

    def _set_image(self, image):
        pass

    def _decode(self, points, labels, multimask_output):
        h, w = self.original_size
        ys = (torch.arange(self.low_res) + 0.5) / self.low_res * h
        xs = (torch.arange(self.low_res) + 0.5) / self.low_res * w
        centre = points.mean(1)  # [Q, 2]: the point, or the centre of the box corners
        dist = ((xs[None, None, :] - centre[:, 0, None, None]) ** 2 +
                (ys[None, :, None] - centre[:, 1, None, None]) ** 2).sqrt()
        if multimask_output:
            radii = torch.tensor([0.08, 0.16, 0.3]) * min(h, w)
        else:
            radii = (points[:, 1] - points[:, 0]).abs().min(-1).values[:, None] / 2
        logits = (radii.expand(len(points), -1)[..., None, None] - dist[:, None]) / 2
        phase = centre[:, :1] * 0.37 + centre[:, 1:] * 0.11 + torch.arange(logits.shape[1])
        return logits, 0.5 + 0.45 * torch.sin(phase)

    def upsample(self, low_res_logits):
        self.upsampled.append(low_res_logits.shape[0] * low_res_logits.shape[1])
        return super().upsample(low_res_logits)


class SamPredictorAdapter:
    """Our predictor as SAM's generator calls a ``SamPredictor`` (identity coordinate transform)."""

    def __init__(self, predictor):
        self.inner, self.model = predictor, SimpleNamespace(mask_threshold=predictor.mask_threshold)
        self.transform = SimpleNamespace(apply_coords=lambda coords, size: coords)
        self.device = torch.device('cpu')

    def set_image(self, image):
        self.inner.set_image(np.ascontiguousarray(image))

    def reset_image(self):
        self.inner.reset_image()

    def predict_torch(self, points, labels, multimask_output, return_logits):
        return self.inner.predict_torch(points, labels, multimask_output=multimask_output,
                                        return_logits=return_logits)


def sam_generator(predictor, **kwargs):
    from segment_anything import SamAutomaticMaskGenerator
    generator = SamAutomaticMaskGenerator(SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024)), **kwargs)
    generator.predictor = SamPredictorAdapter(predictor)
    return generator


@pytest.fixture(scope='module')
def tiny_model():
    return build_efficient_sam(TINY_CONFIG, os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt'))


@pytest.fixture(scope='module')
def image():
    with Image.open(os.path.join(EFFICIENTSAM_TINY, 'dogs.png')) as opened:
        return np.asarray(opened.convert('RGB').resize((160, 96)))


def box_xyxy(records):
    boxes = torch.tensor([r['bbox'] for r in records], dtype=torch.float)
    return torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


# --- helpers against segment_anything.utils.amg ------------------------------------------------

@pytest.mark.parametrize('n', [1, 4, 7])
def test_point_grid_at_cell_centres(n):
    np.testing.assert_allclose(mg.point_grid(n), amg.build_point_grid(n))
    assert mg.point_grid(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    for ours, theirs in zip(mg.layer_point_grids(n * 4, 2, 2), amg.build_all_layer_point_grids(n * 4, 2, 2)):
        np.testing.assert_allclose(ours, theirs)


@pytest.mark.parametrize('size,layers', [((1080, 1920), 2), ((97, 203), 3), ((50, 50), 1)])
def test_crop_boxes_match_sam(size, layers):
    assert mg.crop_boxes(size, layers, 512 / 1500) == amg.generate_crop_boxes(size, layers, 512 / 1500)


def test_rle_boxes_stability_match_sam():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 23, 31, generator=generator).cumsum(-1)
    logits[4] = -1  # empty mask
    logits[5] = 1  # full mask
    masks = logits > 0
    ours, theirs = mg.masks_to_rle(masks), amg.mask_to_rle_pytorch(masks)
    assert [mg.rle_for_json(r) for r in ours] == theirs
    for rle, mask in zip(ours, masks):
        np.testing.assert_array_equal(mg.rle_to_mask(rle), mask.numpy())
        assert mg.rle_area(rle) == amg.area_from_rle(mg.rle_for_json(rle)) == int(mask.sum())
        assert mg.coco_rle(rle) == amg.coco_encode_rle(mg.rle_for_json(rle))
    assert torch.equal(mg.masks_to_boxes(masks), amg.batched_mask_to_box(masks))
    torch.testing.assert_close(mg.stability_score(logits[:4], 0.0, 0.5),
                               amg.calculate_stability_score(logits[:4], 0.0, 0.5))
    boxes = torch.tensor([[0, 0, 10, 10], [15, 3, 60, 40], [30, 30, 79, 79], [45, 50, 52, 70]])
    crop, image = [20, 10, 80, 80], [0, 0, 80, 80]
    assert torch.equal(mg.box_near_crop_edge(boxes, crop, image), amg.is_box_near_crop_edge(boxes, crop, image))


@pytest.mark.parametrize('mode', ['holes', 'islands'])
def test_remove_small_regions_matches_sam(mode):
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:30] = True
    mask[10:12, 10:12] = False  # a small hole
    mask[35:37, 35:37] = True  # a small island
    ours, theirs = mg.remove_small_regions(mask, 10, mode), amg.remove_small_regions(mask, 10, mode)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert ours[1] == theirs[1] is True


# --- the generator ------------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs', [dict(points_per_side=8), dict(points_per_side=8, crop_n_layers=1),
                                    dict(points_per_side=6, min_mask_region_area=200)])
def test_same_masks_as_sam_generator_on_the_same_backend(image, kwargs):
    """Filtering on low-res logits keeps what SAM keeps when only full-res-independent filters run
    (stability measured at low resolution differs a little, so it is not filtered on here). Only the
    order may differ after small-region cleanup: SAM counts a mask whose islands are all small as
    changed (it keeps the largest, so nothing changes) and moves it to the end."""
    settings = dict(pred_iou_thresh=0.6, stability_score_thresh=0.0, output_mode='uncompressed_rle', **kwargs)
    ours = AutomaticMaskGenerator(DiscPredictor(), **settings).generate(image)
    theirs = sam_generator(DiscPredictor(), **settings).generate(image)
    assert len(ours) > 5 and len(ours) == len(theirs)
    if 'min_mask_region_area' in kwargs:
        ours, theirs = (sorted(records, key=lambda r: (r['point_coords'], r['bbox'])) for records in (ours, theirs))
    for mine, sams in zip(ours, theirs):
        assert mine['segmentation'] == sams['segmentation']
        assert mine['bbox'] == sams['bbox'] and mine['area'] == sams['area']
        assert mine['crop_box'] == sams['crop_box']
        np.testing.assert_allclose(mine['point_coords'], sams['point_coords'])
        assert mine['predicted_iou'] == pytest.approx(sams['predicted_iou'])
        assert mine['stability_score'] == pytest.approx(sams['stability_score'], abs=0.1)


def test_records_are_sams_format_and_not_duplicated(image):
    records = AutomaticMaskGenerator(DiscPredictor(), points_per_side=10, **RELAXED).generate(image)
    assert len(records) > 5
    for record in records:
        assert set(record) == SAM_FIELDS
        mask = record['segmentation']
        assert mask.dtype == bool and mask.shape == image.shape[:2] and record['area'] == int(mask.sum())
        ys, xs = np.nonzero(mask)
        assert record['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert record['crop_box'] == [0, 0, 160, 96] and len(record['point_coords']) == 1
        assert record['predicted_iou'] > 0 and record['stability_score'] >= 0.5
    iou = box_iou(box_xyxy(records), box_xyxy(records)).fill_diagonal_(0)
    assert iou.max() <= 0.7


def test_output_modes(image):
    kinds = {mode: AutomaticMaskGenerator(DiscPredictor(), points_per_side=4, output_mode=mode,
                                                      **RELAXED).generate(image)
             for mode in ('binary_mask', 'uncompressed_rle', 'coco_rle')}
    from pycocotools import mask as mask_utils
    for binary, raw, coco in zip(*kinds.values()):
        np.testing.assert_array_equal(mg.rle_to_mask(raw['segmentation']), binary['segmentation'])
        np.testing.assert_array_equal(mask_utils.decode({**coco['segmentation'], 'counts': coco['segmentation'][
            'counts'].encode()}).astype(bool), binary['segmentation'])
        json.dumps([raw, coco])


def test_efficientsam_same_masks_for_any_points_per_batch(tiny_model, image):
    """The random tiny model's masks all span the image, so NMS is off here (threshold 1) to compare
    every mask that passes the filters."""
    runs = [AutomaticMaskGenerator(tiny_model, points_per_side=6, points_per_batch=batch,
                                               output_mode='uncompressed_rle', box_nms_thresh=1.0,
                                               **RELAXED).generate(image) for batch in (64, 7)]
    assert len(runs[0]) >= 10 and len(runs[0]) == len(runs[1])
    for first, second in zip(*runs):
        assert first['segmentation'] == second['segmentation']
        assert first['point_coords'] == second['point_coords']
        assert first['predicted_iou'] == pytest.approx(second['predicted_iou'], abs=1e-5)


def test_only_survivors_are_upsampled_in_bounded_chunks(image, monkeypatch):
    from efficientsam_plugins import automatic_mask_generator
    monkeypatch.setattr(automatic_mask_generator, 'UPSAMPLE_PIXELS', 5 * 160 * 96)
    predictor = DiscPredictor()
    generator = AutomaticMaskGenerator(predictor, points_per_side=8, pred_iou_thresh=0.9,
                                                   stability_score_thresh=0.0)
    generator.generate(image)
    assert 0 < sum(predictor.upsampled) < 8 * 8 * 3 / 4 and max(predictor.upsampled) <= 5


@pytest.mark.parametrize('crop_n_layers', [0, 1])
def test_masks_over_the_rle_budget_are_decoded_again(image, monkeypatch, crop_n_layers):
    from efficientsam_plugins import automatic_mask_generator
    settings = dict(points_per_side=6, crop_n_layers=crop_n_layers, output_mode='uncompressed_rle', **RELAXED)
    stored = AutomaticMaskGenerator(DiscPredictor(), **settings).generate(image)
    monkeypatch.setattr(automatic_mask_generator, 'RLE_BUDGET_BYTES', 4000)
    predictor = DiscPredictor()
    redecoded = AutomaticMaskGenerator(predictor, **settings).generate(image)
    assert redecoded == stored and len(stored) > 5
    monkeypatch.setattr(automatic_mask_generator, 'RLE_BUDGET_BYTES', 0)
    assert AutomaticMaskGenerator(DiscPredictor(), **settings).generate(image) == stored
    boxes = [[10, 10, 60, 50], [80, 20, 150, 90]]
    assert len(AutomaticMaskGenerator(DiscPredictor(), **RELAXED).generate(image, boxes=boxes)) == 2


def test_coarse_to_fine_skips_covered_points(image):
    predictor = DiscPredictor()
    generator = AutomaticMaskGenerator(predictor, points_per_side=12, coarse_points_per_side=4,
                                                   coarse_iou_thresh=0.8, **RELAXED)
    decoded = []
    decode = predictor.decode_low_res
    predictor.decode_low_res = lambda prompts, *args: decoded.append(prompts[:, 0]) or decode(prompts, *args)
    records = generator.generate(image)
    coarse, fine = decoded[0], torch.cat(decoded[1:])
    assert len(coarse) == 16 and 0 < len(fine) < 144 and len(records) > 3
    confident = [r for r in records if r['predicted_iou'] >= 0.8 and r['point_coords'][0] in coarse.tolist()]
    for record in confident:  # no fine point inside a confident coarse mask was decoded
        assert not record['segmentation'][fine[:, 1].long(), fine[:, 0].long()].any()


def test_box_prompts(image):
    boxes = [[10, 10, 60, 50], [80, 20, 150, 90], [0, 0, 160, 96]]
    records = AutomaticMaskGenerator(DiscPredictor(), **RELAXED).generate(image, boxes=boxes)
    assert 1 <= len(records) <= 3
    for record in records:
        assert set(record) == SAM_FIELDS and len(record['point_coords']) == 2  # the box's corners
        x1, y1, x2, y2 = np.ravel(record['point_coords'])
        bx, by, bw, bh = record['bbox']
        assert x1 <= bx and y1 <= by and bx + bw <= x2 and by + bh <= y2


@pytest.mark.parametrize('kwargs,match', [
    (dict(points_per_side=None), 'exactly one of points_per_side and point_grids'),
    (dict(points_per_side=0), 'points_per_side must be an integer >= 1'),
    (dict(points_per_batch=0), 'points_per_batch'),
    (dict(pred_iou_thresh=1.5), r'pred_iou_thresh must be a number in \[0, 1\]'),
    (dict(output_mode='png'), 'output_mode must be one of'),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]), r'\[N, 2\]'),
    (dict(point_grids=None, crop_n_layers=1, points_per_side=None), 'exactly one'),
    (dict(coarse_points_per_side=32), 'must be smaller than points_per_side'),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutomaticMaskGenerator(DiscPredictor(), **kwargs)


def test_bad_inputs(image):
    with pytest.raises(TypeError, match='EfficientSam model or a Predictor'):
        AutomaticMaskGenerator('ti')
    generator = AutomaticMaskGenerator(DiscPredictor(), points_per_side=2)
    with pytest.raises(ValueError, match='HxWx3'):
        generator.generate(image[..., 0])
    with pytest.raises(ValueError, match=r'boxes must be \[B, 4\]'):
        generator.generate(image, boxes=[1, 2, 3, 4])
    with pytest.raises(ValueError, match='outside the 160x96 image'):
        generator.generate(image, boxes=[[0, 0, 500, 50]])
    with pytest.raises(ValueError, match='use crop_n_layers=0'):
        AutomaticMaskGenerator(DiscPredictor(), crop_n_layers=1).generate(image, boxes=[[0, 0, 5, 5]])


# --- tools/segment_everything.py ----------------------------------------------------------------

def segment_everything(*args):
    spec_path = os.path.join(REPO_ROOT, 'tools', 'segment_everything.py')
    import importlib.util
    spec = importlib.util.spec_from_file_location('segment_everything', spec_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """The tiny test model as a checkpoint with its config, as the tool's ``--model`` takes it."""
    folder = tmp_path_factory.mktemp('tiny')
    (folder / 'config.json').write_text(json.dumps(TINY_CONFIG))
    return str(folder / 'config.json'), os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt')


def test_tool_writes_coco_rle_and_overlay(tmp_path, tiny_checkpoint, image):
    Image.fromarray(image).save(tmp_path / 'image.png')
    config, checkpoint = tiny_checkpoint
    out, overlay = tmp_path / 'masks.json', tmp_path / 'overlay.png'
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'segment_everything.py'), str(tmp_path / 'image.png'),
         '--model', config, '--checkpoint', checkpoint, '--points-per-side', '4', '--pred-iou-thresh', '0',
         '--stability-score-offset', '0.1', '--stability-score-thresh', '0.5', '--out', str(out),
         '--overlay', str(overlay)], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())
    assert records and set(records[0]) == SAM_FIELDS and isinstance(records[0]['segmentation']['counts'], str)
    with Image.open(overlay) as written:
        assert written.size == (160, 96)
    assert 'RANDOM' not in result.stderr and f'{len(records)} masks' in result.stdout


def test_tool_random_weights_warns(tmp_path, tiny_checkpoint, image, capsys):
    Image.fromarray(image).save(tmp_path / 'image.png')
    assert segment_everything(str(tmp_path / 'image.png'), '--model', tiny_checkpoint[0], '--random-weights',
                              '--points-per-side', '2', '--out', str(tmp_path / 'm.json')) == 0
    assert 'RANDOM weights' in capsys.readouterr().err and (tmp_path / 'm.json').is_file()


@pytest.mark.parametrize('args,match', [
    (('{tmp}/missing.png', '--out', '{tmp}/m.json'), 'image not found'),
    (('{tmp}/not_an_image.png', '--out', '{tmp}/m.json'), 'cannot read image'),
    (('{tmp}/image.png', '--out', '{tmp}'), 'is a folder'),
    (('{tmp}/image.png', '--out', '{tmp}/m.json', '--overlay', '{tmp}/o.xyz'), 'unknown image extension'),
    (('{tmp}/image.png', '--out', '{tmp}/no/such/m.json'), 'output folder does not exist'),
    (('{tmp}/image.png', '--out', '{tmp}/m.json', '--boxes', '{tmp}/missing.json'), 'boxes file not found'),
    (('{tmp}/image.png', '--out', '{tmp}/m.json', '--boxes', '{tmp}/bad_boxes.json'), 'list of'),
    (('{tmp}/image.png', '--out', '{tmp}/m.json', '--model', '{tmp}/missing.json'), 'config'),
])
def test_tool_bad_inputs(tmp_path, args, match, capsys):
    Image.new('RGB', (32, 24)).save(tmp_path / 'image.png')
    (tmp_path / 'not_an_image.png').write_text('text')
    (tmp_path / 'bad_boxes.json').write_text('{"boxes": 3}')
    argv = [arg.replace('{tmp}', str(tmp_path)) for arg in args] + ['--random-weights']
    spec_main = lambda argv_: segment_everything(*argv_)  # noqa: E731
    assert run_tool(spec_main, argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('error: ') and match in last


def test_tool_bad_number_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        segment_everything(str(tmp_path / 'image.png'), '--out', str(tmp_path / 'm.json'), '--points-per-side', '0')
    assert exit_info.value.code == 2
