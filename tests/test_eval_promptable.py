"""Promptable mIoU evaluation: oracle and box-filled predictions, click rules, batching, the CLI."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import COCO_MINI, COCO_ROOTS

from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.evaluation import (
    BoxFillSegmenter,
    GroundTruthSegmenter,
    ImageInfo,
    Instance,
    InstanceDataset,
    PredictorSegmenter,
    PromptBatch,
    PromptProtocol,
    Segmentation,
    Segmenter,
    center_click,
    evaluate_dataset,
    evaluate_image,
    next_positive_click,
    random_click,
    tight_box,
)
from efficientsam_plugins.evaluation.clicks import click_rng
from efficientsam_plugins.predictor import EfficientSamPredictor

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
TINY = dict(img_size=256, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32], dec_depth=2,
            dec_heads=2, dec_mlp_dim=64, upscaling=[16, 8], iou_head_hidden_dim=32)


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """The tiny model's ops are small; two OpenMP threads on a shared 2-core machine mostly wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def coco_split(split='val2017', root=COCO_MINI):
    return InstanceDataset(os.path.join(root, 'annotations', f'instances_{split}.json'), os.path.join(root, split))


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = build_efficient_sam(TINY)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


class Recorder(Segmenter):
    """Wraps a segmenter and records the shape of every batch it receives."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.needs_image = inner.needs_image

    def set_image(self, image, info):
        self.inner.set_image(image, info)

    def segment(self, prompts):
        self.calls.append((None if prompts.boxes is None else prompts.boxes.shape,
                           None if prompts.points is None else prompts.points.shape))
        return self.inner.segment(prompts)


@pytest.mark.parametrize('root', COCO_ROOTS, ids=os.path.basename)
@pytest.mark.parametrize('split,protocol', [('val2017', 'random'), ('train2017', 'center')])
def test_oracle_predictions_score_one(root, split, protocol):
    dataset = coco_split(split, root)
    result = evaluate_dataset(dataset, GroundTruthSegmenter(dataset),
                              PromptProtocol(clicks=(1, 3), click_protocol=protocol), progress=False)
    with open(dataset.ann_file) as f:
        instances = sum(not a['iscrowd'] for a in json.load(f)['annotations'])
    assert set(result.summary) == {'box', '1_click', '3_clicks'}
    for entry in result.summary.values():
        assert entry['mIoU'] == 1.0 and entry['num_instances'] == instances > 40
        assert all(entry[b]['mIoU'] == 1.0 for b in ('small', 'medium', 'large'))


@pytest.mark.parametrize('root', COCO_ROOTS, ids=os.path.basename)
def test_box_filled_masks_match_independent_iou(root):
    from pycocotools.coco import COCO
    dataset = coco_split('val2017', root)
    result = evaluate_dataset(dataset, BoxFillSegmenter(), PromptProtocol(clicks=()), progress=False)
    coco = COCO(dataset.ann_file)
    expected = {'small': [], 'medium': [], 'large': []}
    for ann in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        gt = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(gt)
        filled = np.zeros_like(gt)
        filled[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        iou = (gt & filled).sum() / (gt | filled).sum()
        expected['small' if gt.sum() < 32 ** 2 else 'medium' if gt.sum() < 96 ** 2 else 'large'].append(iou)
    box = result.summary['box']
    assert box['num_instances'] == sum(len(v) for v in expected.values())
    assert box['mIoU'] == pytest.approx(np.mean(sum(expected.values(), [])), abs=1e-12)
    for bucket, values in expected.items():
        assert box[bucket]['mIoU'] == pytest.approx(np.mean(values), abs=1e-12)
        assert box[bucket]['num_instances'] == len(values)
    assert 0.3 < box['mIoU'] < 0.9


def test_click_rules():
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:31, 5:26] = True  # 21x21 square centred at (15, 20)
    assert center_click(mask) == (15.0, 20.0)
    # The image border counts as boundary: in a full 5x9 image every pixel of row 2 from x=2 to
    # x=6 is 3 px from it; ties go to the first pixel in raster order.
    assert center_click(np.ones((5, 9), dtype=bool)) == (2.0, 2.0)
    clicks = [random_click(mask, click_rng(0, 7, 3)) for _ in range(2)]
    assert clicks[0] == clicks[1] and mask[int(clicks[0][1]), int(clicks[0][0])]
    rng = click_rng(0, 7, 3)
    many = [random_click(mask, rng) for _ in range(200)]
    assert all(mask[int(y), int(x)] for x, y in many) and len(set(many)) > 100
    assert next_positive_click(mask | ~mask, mask) is None  # nothing missed: no click
    left = mask.copy()
    left[:, 16:] = False
    x, y = next_positive_click(left, mask)  # a false positive elsewhere does not matter
    assert x >= 16 and mask[int(y), int(x)] and (x, y) == center_click(mask & ~left)


class ScriptedSegmenter(Segmenter):
    """Empty masks on the first click round, then full-image masks (covering every ground truth)."""
    needs_image = False

    def set_image(self, image, info):
        self.shape, self.rounds = (info.height, info.width), 0

    def segment(self, prompts):
        self.rounds += 1
        full = self.rounds > 1
        return Segmentation(np.full((len(prompts), *self.shape), full), np.zeros(len(prompts)))


def test_clicks_are_batched_per_round_and_stop_when_nothing_is_missed():
    masks = [np.zeros((50, 50), dtype=bool) for _ in range(3)]
    masks[0][5:20, 5:20] = masks[1][25:45, 10:30] = masks[2][30:34, 40:48] = True
    instances = [Instance(10 + i, 1, m, int(m.sum())) for i, m in enumerate(masks)]
    info = ImageInfo(1, '', 50, 50)
    recorder = Recorder(ScriptedSegmenter())
    records = evaluate_image(recorder, info, None, instances,
                             PromptProtocol(box=False, clicks=(1, 2, 4), preset='sam'))
    # round 1: all 3 instances, one click each; round 2: everything missed, second click for all;
    # rounds 3-4: the full-image masks miss nothing, so no click and no decoder call.
    assert recorder.calls == [(None, (3, 1, 2)), (None, (3, 2, 2))]
    by_prompt = {(r['prompt_name'], r['annotation_id']): r for r in records}
    for inst in instances:
        assert by_prompt[('1_click', inst.annotation_id)]['iou'] == 0.0
        four = by_prompt[('4_clicks', inst.annotation_id)]
        assert len(four['prompt']['points']) == 2
        assert four['iou'] == pytest.approx(inst.area / 2500)


def test_box_prompts_and_clicks_share_one_call_each():
    dataset = coco_split('val2017')
    recorder = Recorder(GroundTruthSegmenter(dataset))
    image_id = dataset.image_ids[2]
    instances, _ = dataset.instances(image_id)
    evaluate_image(recorder, dataset.images[image_id], None, instances, PromptProtocol(clicks=(1, 3)))
    q = len(instances)
    assert recorder.calls[0] == ((q, 4), None) and recorder.calls[1] == (None, (q, 1, 2))
    assert len(recorder.calls) <= 4


def test_predictor_segmenter_matches_predictor():
    model = tiny_model()
    image = np.random.default_rng(0).integers(0, 255, (90, 130, 3), dtype=np.uint8)
    segmenter = PredictorSegmenter(EfficientSamPredictor(model, max_queries_per_batch=2))
    segmenter.set_image(image, ImageInfo(1, '', 130, 90))
    boxes = np.array([[5, 5, 60, 70], [40, 10, 120, 80], [0, 0, 130, 90]], dtype=np.float32)
    points = np.array([[[20, 30], [25, 35]], [[100, 50], [90, 60]], [[65, 45], [10, 10]]], dtype=np.float32)
    predictor = EfficientSamPredictor(model)
    predictor.set_image(image)
    for prompts, kwargs in ((PromptBatch([1, 2, 3], boxes=boxes), dict(boxes=boxes)),
                            (PromptBatch([1, 2, 3], points=points), dict(points=points))):
        result = segmenter.segment(prompts)
        masks, iou, _ = predictor.predict(**kwargs)
        best = iou.argmax(1)
        np.testing.assert_array_equal(result.masks, masks[np.arange(3), best])
        np.testing.assert_allclose(result.scores, iou[np.arange(3), best], rtol=1e-6)
    with pytest.raises(ValueError, match='at most 6'):
        segmenter.segment(PromptBatch([1], points=np.zeros((1, 7, 2))))


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """The tiny model's weights and, beside them, its architecture: ``(checkpoint, config .json)``."""
    folder = tmp_path_factory.mktemp('tiny')
    path = str(folder / 'tiny.pt')
    torch.save({'model': tiny_model().state_dict()}, path)
    (folder / 'tiny.config.json').write_text(json.dumps(TINY))
    return path, str(folder / 'tiny.config.json')


def run_tool(tool, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', tool), *args, '--no-progress'],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


def test_cli_end_to_end_with_dump(tiny_checkpoint, tmp_path):
    out, dump = tmp_path / 'miou.json', tmp_path / 'masks.json'
    ann = os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json')
    checkpoint, config = tiny_checkpoint
    proc = run_tool('eval_promptable.py', '--ann-file', ann, '--img-dir', os.path.join(COCO_MINI, 'val2017'),
                    '--model', config, '--checkpoint', checkpoint, '--prompts', 'box', '1', '3',
                    '--click-protocol', 'center', '--out', str(out), '--dump-predictions', str(dump))
    assert proc.returncode == 0, proc.stderr
    assert 'mIoU' in proc.stdout and '3_clicks' in proc.stdout
    summary = json.loads(out.read_text())['summary']
    predictions = json.loads(dump.read_text())['predictions']
    dataset = InstanceDataset(ann, os.path.join(COCO_MINI, 'val2017'))
    gt = {i.annotation_id: i for image_id in dataset.image_ids for i in dataset.instances(image_id)[0]}
    assert len(predictions) == 3 * len(gt) == 3 * summary['box']['num_instances']
    from pycocotools import mask as mask_api
    for record in predictions:
        pred = mask_api.decode(dict(record['segmentation'], counts=record['segmentation']['counts'].encode()))
        inst = gt[record['annotation_id']]
        pred = pred.astype(bool)
        assert record['iou'] == pytest.approx((pred & inst.mask).sum() / (pred | inst.mask).sum())
        if record['prompt_name'] == 'box':
            assert record['prompt']['box'] == tight_box(inst.mask)
        else:
            assert record['prompt']['points'][0] == list(center_click(inst.mask))
    mean_box = np.mean([r['iou'] for r in predictions if r['prompt_name'] == 'box'])
    assert summary['box']['mIoU'] == pytest.approx(mean_box)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_bad_inputs_leave_no_output(tiny_checkpoint, tmp_path):
    tool = load_tool('eval_promptable')
    ann = os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json')
    out, dump = tmp_path / 'miou.json', tmp_path / 'dump.json'
    checkpoint, config = tiny_checkpoint
    common = ['--model', config, '--checkpoint', checkpoint, '--out', str(out),
              '--dump-predictions', str(dump), '--no-progress']
    with pytest.raises(FileNotFoundError, match='annotation file not found'):
        tool.main(['--ann-file', str(tmp_path / 'missing.json'), '--img-dir', str(tmp_path), *common])
    with pytest.raises(FileNotFoundError, match='image folder not found'):
        tool.main(['--ann-file', ann, '--img-dir', str(tmp_path / 'nowhere'), *common])
    with pytest.raises(FileNotFoundError, match='output folder does not exist'):
        tool.main(['--ann-file', ann, '--img-dir', os.path.join(COCO_MINI, 'val2017'), *common[:4],
                   '--out', str(tmp_path / 'no' / 'miou.json')])
    images = tmp_path / 'images'
    shutil.copytree(os.path.join(COCO_MINI, 'val2017'), images)
    broken = sorted(os.listdir(images))[-1]
    (images / broken).write_bytes(b'not a jpeg at all')
    with pytest.raises(ValueError, match=f'cannot read image {images / broken}'):
        tool.main(['--ann-file', ann, '--img-dir', str(images), *common])
    os.remove(images / broken)
    with pytest.raises(FileNotFoundError, match='1 image files .* are missing'):
        tool.main(['--ann-file', ann, '--img-dir', str(images), *common])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['images']


def test_cli_says_plainly_when_the_weights_are_random(tiny_checkpoint, tmp_path, capsys):
    _, config = tiny_checkpoint
    out = tmp_path / 'miou.json'
    assert load_tool('eval_promptable').main([
        '--ann-file', os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json'), '--img-dir',
        os.path.join(COCO_MINI, 'val2017'), '--model', config, '--random-weights', '--max-images', '1',
        '--prompts', 'box', '--out', str(out), '--no-progress']) == 0
    printed = capsys.readouterr()
    assert 'WARNING: running with RANDOM weights, so the mIoU figures below are meaningless' in printed.err
    assert '(random weights: the mIoU figures above are meaningless)' in printed.out
    settings = json.loads(out.read_text())['settings']
    assert (settings['model'], settings['backend'], settings['trained']) == (config, 'torch', False)


def test_cli_reports_errors_without_traceback(tmp_path):
    proc = run_tool('eval_promptable.py', '--ann-file', str(tmp_path / 'missing.json'), '--img-dir', str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f'error: annotation file not found: {tmp_path / "missing.json"}'
