"""SqueezeSAM evaluation: tools/eval_promptable.py --model squeezesam (both protocols) and the
blog's COCO-with-LVIS-masks annotation file (tools/merge_lvis_masks.py) on a crafted case."""
import importlib.util
import json
import os

import pytest
import torch
from conftest import COCO_MINI, TEST_DATA
from pycocotools import mask as mask_api

from efficientsam_plugins.build import build_squeeze_sam
from efficientsam_plugins.evaluation import InstanceDataset, tight_box
from efficientsam_plugins.evaluation.lvis_merge import merge_lvis_masks
from efficientsam_plugins.predictor import SqueezeSamPredictor

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SQUEEZESAM_TINY = os.path.join(TEST_DATA, 'squeezesam_tiny')
ANN_FILE = os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json')
IMG_DIR = os.path.join(COCO_MINI, 'val2017')


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_config():
    with open(os.path.join(SQUEEZESAM_TINY, 'reference.json')) as f:
        return json.load(f)['config']


@pytest.fixture(scope='module')
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('protocol', ['paper', 'sam'])
def test_eval_promptable_squeezesam(tiny_config, tmp_path, protocol, single_thread):
    out, dump = tmp_path / 'miou.json', tmp_path / 'masks.json'
    checkpoint, config = os.path.join(SQUEEZESAM_TINY, 'state_dict.pt'), tmp_path / 'squeezesam_tiny.json'
    config.write_text(json.dumps(tiny_config))  # SqueezeSAM's keys: the registry knows the family
    status = load_tool('eval_promptable').main([
        '--model', str(config), '--checkpoint', checkpoint,
        '--ann-file', ANN_FILE, '--img-dir', IMG_DIR, '--max-images', '2', '--prompts', 'box', '1', '3',
        '--protocol', protocol, '--out', str(out), '--dump-predictions', str(dump), '--no-progress'])
    assert status == 0
    result = json.loads(out.read_text())
    assert result['settings']['model'] == str(config) and result['settings']['click_protocol'] == (
        'random' if protocol == 'paper' else 'center')
    assert set(result['summary']) == {'box', '1_click', '3_clicks'}
    predictions = json.loads(dump.read_text())['predictions']
    # The box answers are the predictor's best-IoU masks for the instance's tight box.
    dataset = InstanceDataset(ANN_FILE, IMG_DIR)
    image_id = dataset.image_ids[0]
    predictor = SqueezeSamPredictor(build_squeeze_sam(tiny_config, checkpoint))
    predictor.set_image(dataset.load_image(image_id))
    instances = {i.annotation_id: i for i in dataset.instances(image_id)[0]}
    boxes = [r for r in predictions if r['prompt_name'] == 'box' and r['image_id'] == image_id]
    assert len(boxes) == len(instances)
    for record in boxes[:3]:
        assert record['prompt']['box'] == tight_box(instances[record['annotation_id']].mask)
        masks, _, _ = predictor.predict(boxes=[record['prompt']['box']], best_only=True)
        rle = dict(record['segmentation'], counts=record['segmentation']['counts'].encode())
        # Batches of 8 queries and of 1 differ only by float summation order.
        assert (mask_api.decode(rle).astype(bool) == masks[0, 0]).mean() > 0.999


def test_squeezesam_model_option_errors(tiny_config, tmp_path, monkeypatch, capsys):
    tool = load_tool('eval_promptable')
    data = ['--ann-file', ANN_FILE, '--img-dir', IMG_DIR, '--no-progress']
    manifest = tmp_path / 'manifest.json'
    manifest.write_text(json.dumps([{'name': 'my_squeezesam', 'filename': 'squeeze_sam.pt', 'urls': [
        'file:///nowhere/squeeze_sam.pt'], 'arch': {'family': 'squeezesam', 'config': 'base'}}]))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(manifest))
    with pytest.raises(SystemExit) as usage:  # a name the registry does not know: a usage error
        tool.main(['--model', 'squeezesam_base', *data])
    err = capsys.readouterr().err
    assert usage.value.code == 2 and "unknown model 'squeezesam_base': expected one of" in err
    assert 'my_squeezesam' in err  # a user manifest's entries are model names too
    mixed = tmp_path / 'mixed.json'
    mixed.write_text(json.dumps({**tiny_config, 'img_size': 128}))  # an EfficientSAM key in a SqueezeSAM config
    with pytest.raises(ValueError, match=r"unknown SqueezeSAM config keys \['img_size'\]"):
        tool.main(['--model', str(mixed), '--random-weights', *data])
    with pytest.raises(ValueError, match='a config .json has no released weights'):
        tool.main(['--model', str(mixed), *data])


def polygon(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def annotation(ann_id, image_id, box, **extra):
    x1, y1, x2, y2 = box
    return dict(id=ann_id, image_id=image_id, category_id=1, segmentation=polygon(*box), iscrowd=0,
                area=float((x2 - x1) * (y2 - y1)), bbox=[x1, y1, x2 - x1, y2 - y1], **extra)


@pytest.fixture()
def crafted():
    """Image 1 (100x100) in both files; image 2 only in COCO.

    COCO 10 = [10, 10, 50, 50] and LVIS 100 = [12, 10, 50, 50]: IoU 0.95, replaced.
    COCO 11 = [60, 60, 90, 90] and LVIS 101 = [60, 60, 90, 75]: IoU 0.5, kept at 0.7.
    COCO 12 = [10, 10, 48, 50] also overlaps LVIS 100 (IoU 0.9) but it is taken by COCO 10.
    COCO 13 = [0, 80, 20, 100] has no LVIS partner; crowd 14 = LVIS 102's box is never replaced.
    """
    images = [dict(id=1, width=100, height=100, file_name='a.jpg'), dict(id=2, width=100, height=100,
                                                                         file_name='b.jpg')]
    coco = dict(images=images, categories=[dict(id=1, name='thing')], annotations=[
        annotation(10, 1, (10, 10, 50, 50)), annotation(11, 1, (60, 60, 90, 90)),
        annotation(12, 1, (10, 10, 48, 50)), annotation(13, 1, (0, 80, 20, 100)),
        dict(annotation(14, 1, (70, 0, 100, 30)), iscrowd=1), annotation(15, 2, (10, 10, 50, 50))])
    lvis_images = [dict(id=1, width=100, height=100, coco_url='http://images.cocodataset.org/val2017/a.jpg',
                        not_exhaustive_category_ids=[], neg_category_ids=[])]
    lvis = dict(images=lvis_images, categories=[dict(id=7, name='lvis_thing')], annotations=[
        annotation(100, 1, (12, 10, 50, 50)), annotation(101, 1, (60, 60, 90, 75)),
        annotation(102, 1, (70, 0, 100, 30))])
    return coco, lvis


def test_merge_lvis_masks_crafted(crafted):
    coco, lvis = crafted
    merged, report = merge_lvis_masks(coco, lvis)
    by_id = {a['id']: a for a in merged['annotations']}
    assert by_id[10]['segmentation'] == polygon(12, 10, 50, 50) and by_id[10]['lvis_id'] == 100
    assert by_id[10]['lvis_iou'] == pytest.approx(0.95) and by_id[10]['bbox'] == [12.0, 10.0, 38.0, 40.0]
    assert by_id[10]['area'] == 38 * 40 and by_id[10]['category_id'] == 1  # COCO's category stays
    for kept in (11, 12, 13, 14, 15):
        assert by_id[kept] == next(a for a in coco['annotations'] if a['id'] == kept)
    assert report['replaced'] == 1 and report['coco_non_crowd_masks'] == 5 and report['masks_on_lvis_images'] == 4
    assert report['images_in_lvis'] == 1 and report['coco_images'] == 2
    assert report['best_iou_at_least'] == {'0.5': 3, '0.6': 2, '0.7': 2, '0.8': 2, '0.9': 2}
    assert merged['categories'] == coco['categories'] and merged['images'] == coco['images']
    assert coco['annotations'][0]['segmentation'] == polygon(10, 10, 50, 50)  # the input is not modified
    lenient, report = merge_lvis_masks(coco, lvis, min_iou=0.5)
    assert report['replaced'] == 2 and {a['id']: a for a in lenient['annotations']}[11]['lvis_id'] == 101


def test_merge_lvis_masks_tool(crafted, tmp_path):
    coco, lvis = crafted
    (tmp_path / 'coco.json').write_text(json.dumps(coco))
    (tmp_path / 'lvis.json').write_text(json.dumps(lvis))
    tool = load_tool('merge_lvis_masks')
    out, report = tmp_path / 'merged.json', tmp_path / 'report.json'
    assert tool.main(['--coco', str(tmp_path / 'coco.json'), '--lvis', str(tmp_path / 'lvis.json'),
                      '--min-iou', '0.45', '--out', str(out), '--report', str(report)]) == 0
    assert json.loads(report.read_text())['replaced'] == 2
    (tmp_path / 'images').mkdir()
    dataset = InstanceDataset(str(out), str(tmp_path / 'images'))  # a COCO-format file the evaluation reads
    assert dataset.format == 'coco' and len(dataset.annotations(1)) == 4
    assert int(dataset.mask(dataset.api.anns[11]).sum()) == 30 * 15
    with pytest.raises(SystemExit):
        tool.parse_args(['--coco', 'a', '--lvis', 'b', '--out', 'c', '--min-iou', '0'])
    with pytest.raises(ValueError, match='image 1 is 100x100 in the COCO file but 50x100 in the LVIS file'):
        lvis['images'][0]['width'] = 50
        (tmp_path / 'lvis.json').write_text(json.dumps(lvis))
        tool.main(['--coco', str(tmp_path / 'coco.json'), '--lvis', str(tmp_path / 'lvis.json'),
                   '--out', str(out)])
    with pytest.raises(FileNotFoundError, match='LVIS annotation file not found'):
        tool.main(['--coco', str(tmp_path / 'coco.json'), '--lvis', str(tmp_path / 'x.json'), '--out', str(out)])
