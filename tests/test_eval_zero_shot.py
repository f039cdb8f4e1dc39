"""Zero-shot instance segmentation: oracle masks give AP 1.0 (COCO and LVIS), detections are
validated before anything is written, and the CLI runs end to end."""
import importlib.util
import json
import os

import pytest
import torch
from conftest import COCO_MINI, COCO_ROOTS

from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.evaluation import (
    BoxFillSegmenter,
    GroundTruthSegmenter,
    InstanceDataset,
    PromptBatch,
    Segmenter,
    evaluate_segmentation,
    load_detections,
    segment_detections,
)

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


def ground_truth_detections(ann_file, path):
    """The non-crowd ground-truth boxes as detections (score 1), and detection index -> annotation id."""
    with open(ann_file) as f:
        anns = [a for a in json.load(f)['annotations'] if not a.get('iscrowd', 0)]
    with open(path, 'w') as f:
        json.dump([dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=1.0)
                   for a in anns], f)
    return {i: a['id'] for i, a in enumerate(anns)}


class DetectionOracle(Segmenter):
    """Answers detection ``i`` with the ground-truth mask of the annotation it was made from."""
    needs_image = False

    def __init__(self, dataset, index_to_annotation):
        self.inner, self.index_to_annotation = GroundTruthSegmenter(dataset), index_to_annotation

    def set_image(self, image, info):
        self.inner.set_image(image, info)

    def segment(self, prompts):
        keys = [self.index_to_annotation[k] for k in prompts.keys]
        return self.inner.segment(PromptBatch(keys, boxes=prompts.boxes))


@pytest.fixture(scope='module', params=COCO_ROOTS, ids=os.path.basename)
def coco_val(request):
    """(annotation file, image folder, data root) of a val2017 split."""
    root = request.param
    return os.path.join(root, 'annotations', 'instances_val2017.json'), os.path.join(root, 'val2017'), root


def test_oracle_masks_give_coco_ap_one(coco_val, tmp_path):
    ann_file, img_dir, _ = coco_val
    dataset = InstanceDataset(ann_file, img_dir)
    index = ground_truth_detections(ann_file, tmp_path / 'dets.json')
    detections = load_detections(str(tmp_path / 'dets.json'), dataset)
    results = segment_detections(dataset, DetectionOracle(dataset, index), detections, progress=False)
    assert len(results) == len(index)
    metrics = evaluate_segmentation(ann_file, results, 'coco')
    assert all(metrics[k] == 1.0 for k in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'))
    box_filled = evaluate_segmentation(ann_file, segment_detections(dataset, BoxFillSegmenter(), detections,
                                                                    progress=False), 'coco')
    assert 0.05 < box_filled['AP'] < 0.9


def lvis_version_of(ann_file, path):
    """The same annotations in LVIS layout: coco_url instead of file_name, no iscrowd, frequencies."""
    with open(ann_file) as f:
        data = json.load(f)
    present = {a['category_id'] for a in data['annotations'] if not a['iscrowd']}
    images = [dict(id=im['id'], width=im['width'], height=im['height'],
                   coco_url=f'http://images.cocodataset.org/val2017/{im["file_name"]}',
                   not_exhaustive_category_ids=[], neg_category_ids=[]) for im in data['images']]
    anns = [{k: v for k, v in a.items() if k != 'iscrowd'} for a in data['annotations'] if not a['iscrowd']]
    categories = [dict(c, frequency='f' if c['id'] % 2 else 'c') for c in data['categories'] if c['id'] in present]
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=categories), f)


def test_oracle_masks_give_lvis_ap_one(coco_val, tmp_path):
    pytest.importorskip('lvis', reason='LVIS evaluation needs the lvis package')
    coco_ann, _, root = coco_val
    lvis_ann = str(tmp_path / 'lvis_val.json')
    lvis_version_of(coco_ann, lvis_ann)
    dataset = InstanceDataset(lvis_ann, root)  # images found as <img_dir>/val2017/<name>
    assert dataset.format == 'lvis'
    dataset.check_images_exist(dataset.image_ids)
    index = ground_truth_detections(lvis_ann, tmp_path / 'dets.json')
    results = segment_detections(dataset, DetectionOracle(dataset, index),
                                 load_detections(str(tmp_path / 'dets.json'), dataset), progress=False)
    metrics = evaluate_segmentation(lvis_ann, results, 'lvis')
    assert metrics['AP'] == pytest.approx(1.0) and metrics['APf'] == pytest.approx(1.0)


def without(key):
    return lambda det: {k: v for k, v in det.items() if k != key}


def replace(**changes):
    return lambda det: dict(det, **changes)


@pytest.mark.parametrize('corrupt,message', [
    (replace(image_id=123456789), 'unknown image id 123456789'),
    (without('image_id'), 'unknown image id None'),
    (replace(bbox=[0, 0, 10]), 'bbox must be 4 finite numbers'),
    (replace(bbox=[0, 0, 10, float('nan')]), 'bbox must be 4 finite numbers'),
    (replace(bbox=[0, 0, 'a', 10]), 'bbox must be 4 finite numbers'),
    (replace(bbox=[5, 5, -3, 10]), r'bbox \[5, 5, -3, 10\] has no positive width and height'),
    (replace(bbox=[5000, 5, 10, 10]), r'bbox \[5000, 5, 10, 10\] lies outside the 640x427 image'),
    (without('score'), 'score must be a finite number'),
    (replace(category_id=100000), 'unknown category id 100000'),
])
def test_malformed_detections_are_rejected(corrupt, message, tmp_path):
    ann_file = os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json')
    dataset = InstanceDataset(ann_file, os.path.join(COCO_MINI, 'val2017'))
    good = dict(image_id=dataset.image_ids[0], category_id=next(iter(dataset.categories)), bbox=[1, 2, 30, 40],
                score=0.8)
    path = tmp_path / 'dets.json'
    path.write_text(json.dumps([good, corrupt(good), good]))
    with pytest.raises(ValueError, match=f'1 of 3 entries are malformed: entry 1: {message}'):
        load_detections(str(path), dataset)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_end_to_end_and_bad_input(tmp_path):
    torch.manual_seed(0)
    model = build_efficient_sam(TINY)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    checkpoint, config = str(tmp_path / 'tiny.pt'), tmp_path / 'tiny.json'
    torch.save({'model': model.state_dict()}, checkpoint)
    config.write_text(json.dumps(TINY))
    ann_file = os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json')
    dets = tmp_path / 'dets.json'
    ground_truth_detections(ann_file, dets)
    out, metrics_out = tmp_path / 'segm.json', tmp_path / 'ap.json'
    args = ['--ann-file', ann_file, '--img-dir', os.path.join(COCO_MINI, 'val2017'), '--model', str(config),
            '--checkpoint', checkpoint, '--out', str(out), '--metrics-out', str(metrics_out), '--no-progress']
    tool = load_tool('eval_zero_shot')
    assert tool.main(['--detections', str(dets), *args]) == 0
    results = json.loads(out.read_text())
    metrics = json.loads(metrics_out.read_text())['metrics']
    assert len(results) == len(json.loads(dets.read_text()))
    assert all(set(r) == {'image_id', 'category_id', 'score', 'segmentation'} for r in results)  # no bbox: see APs
    assert all(0.0 <= metrics[k] <= 1.0 for k in ('AP', 'APs', 'APm', 'APl') if metrics[k] >= 0)
    out.unlink()
    metrics_out.unlink()
    bad = json.loads(dets.read_text())
    bad[1]['image_id'] = 424242
    bad[2]['bbox'] = [1, 2, 3]
    dets.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r'2 of \d+ entries are malformed: entry 1: unknown image id 424242; '
                                         r'entry 2: bbox must be 4 finite numbers'):
        tool.main(['--detections', str(dets), *args])
    with pytest.raises(FileNotFoundError, match='detections file not found'):
        tool.main(['--detections', str(tmp_path / 'none.json'), *args])
    assert not out.exists() and not metrics_out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dets.json', 'tiny.json', 'tiny.pt']
