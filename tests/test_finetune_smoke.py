"""The smoke finetuning config end to end: it trains with a decreasing loss, evaluates with the
promptable metric, exports an official-layout checkpoint that the predictor loads, and both
evaluation tools run on that checkpoint."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from conftest import COCO_MINI

mmengine = pytest.importorskip('mmengine')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SMOKE_CONFIG = os.path.join(REPO, 'configs', 'efficientsam', 'efficientsam_ti_sa1b_smoke.py')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    from mmengine.config import Config
    from mmengine.runner import Runner
    work_dir = tmp_path_factory.mktemp('smoke')
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.work_dir = str(work_dir)
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(REPO)  # the config's data paths are relative to the repository, like tools/train.py runs
    # One thread: this model's ops are tiny, and two OpenMP threads on a shared 2-core machine
    # spend most of their time waiting for each other (10x slower).
    torch.set_num_threads(1)
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    metrics = {k: v.current() for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/')}
    return work_dir, losses, metrics


def test_smoke_training_decreases_the_loss(smoke_run):
    _, losses, metrics = smoke_run
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.75 * losses[:5].mean(), losses
    assert 0.0 <= metrics['val/promptable/box/mIoU'] <= 1.0
    assert metrics['val/promptable/3_clicks/num_instances'] > 0


def test_exported_checkpoint_loads_in_the_predictor(smoke_run):
    from efficientsam_plugins.build import build_efficient_sam
    from efficientsam_plugins.predictor import EfficientSamPredictor
    work_dir, _, _ = smoke_run
    path = work_dir / 'efficientsam_smoke.pt'
    assert list(torch.load(path, weights_only=True)) == ['model']
    config = json.loads((work_dir / 'efficientsam_smoke.config.json').read_text())
    predictor = EfficientSamPredictor(build_efficient_sam(config, str(path)))
    predictor.set_image(np.zeros((60, 80, 3), dtype=np.uint8))
    masks, iou, _ = predictor.predict(boxes=[[5, 5, 40, 50]])
    assert masks.shape == (1, 3, 60, 80) and np.isfinite(iou).all()


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluation_tools_run_on_the_finetuned_checkpoint(smoke_run, tmp_path):
    work_dir, _, _ = smoke_run
    checkpoint, config = str(work_dir / 'efficientsam_smoke.pt'), str(work_dir / 'efficientsam_smoke.config.json')
    ann_file = os.path.join(COCO_MINI, 'annotations', 'instances_val2017.json')
    img_dir = os.path.join(COCO_MINI, 'val2017')
    common = ['--ann-file', ann_file, '--img-dir', img_dir, '--model', config, '--checkpoint', checkpoint,
              '--no-progress']
    promptable = load_tool('eval_promptable')
    assert promptable.main([*common, '--max-images', '2', '--out', str(tmp_path / 'miou.json')]) == 0
    summary = json.loads((tmp_path / 'miou.json').read_text())['summary']
    assert set(summary) == {'box', '1_click', '3_clicks'} and 0.0 <= summary['box']['mIoU'] <= 1.0
    with open(ann_file) as f:
        data = json.load(f)
    first = {im['id'] for im in data['images'][:2]}
    detections = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=0.5)
                  for a in data['annotations'] if a['image_id'] in first and not a['iscrowd']]
    (tmp_path / 'dets.json').write_text(json.dumps(detections))
    assert load_tool('eval_zero_shot').main([*common, '--detections', str(tmp_path / 'dets.json'),
                                             '--out', str(tmp_path / 'segm.json'),
                                             '--metrics-out', str(tmp_path / 'ap.json')]) == 0
    assert len(json.loads((tmp_path / 'segm.json').read_text())) == len(detections)
    assert 'AP' in json.loads((tmp_path / 'ap.json').read_text())['metrics']
