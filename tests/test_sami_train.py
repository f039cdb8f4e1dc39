"""SAMI through the launchers: smoke training, resume, 2-process DDP, cached targets, finetuning."""
import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('segment_anything')

from conftest import COCO_MINI  # noqa: E402
from test_sami_core import save_tiny_sam  # noqa: E402
from test_sami_mmpretrain import SMOKE_TEACHER  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SMOKE = os.path.join(REPO, 'configs', 'sami', 'sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py')
FINETUNE_SMOKE = os.path.join(REPO, 'configs', 'imagenet', 'sami_vit-tiny_in1k-100e_smoke.py')


def run(cmd, env=None):
    """Runs a launcher (one thread per process); on failure the assertion shows its output."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', **(env or {}))
    result = subprocess.run(cmd, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def logged_losses(work_dir):
    """``{iteration: loss}`` from the run's scalars.json."""
    (path,) = glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return {row['iter']: row['loss'] for row in rows if 'loss' in row}


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; more only contend on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('teacher') / 'tiny_sam.pth'
    save_tiny_sam(path, SMOKE_TEACHER)
    return str(path)


def common_options(teacher_ckpt, data_root=COCO_MINI):
    return [f'model.target_generator.checkpoint={teacher_ckpt}',
            f'train_dataloader.dataset.data_root={data_root}']


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory, teacher_ckpt):
    """Six iterations of the smoke config with checkpoints after iterations 3 and 6."""
    work_dir = str(tmp_path_factory.mktemp('smoke'))
    run([sys.executable, 'tools/train.py', SMOKE, '--work-dir', work_dir, '--cfg-options',
         'train_cfg.max_iters=6', 'default_hooks.checkpoint.interval=3',
         *common_options(teacher_ckpt)])
    return work_dir


def test_smoke_training_decreases_the_loss(smoke_run):
    losses = logged_losses(smoke_run)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert losses[5] + losses[6] < losses[1] + losses[2]
    checkpoint = torch.load(os.path.join(smoke_run, 'iter_6.pth'), weights_only=True)
    assert not any('target_generator' in key or 'teacher' in key for key in checkpoint['state_dict'])


def test_resumed_run_continues_with_the_same_losses(smoke_run, teacher_ckpt, tmp_path):
    resumed = str(tmp_path / 'resumed')
    os.makedirs(resumed)
    shutil.copy(os.path.join(smoke_run, 'iter_3.pth'), resumed)
    with open(os.path.join(resumed, 'last_checkpoint'), 'w') as f:
        f.write(os.path.join(resumed, 'iter_3.pth'))
    load_tool('train').main([SMOKE, '--work-dir', resumed, '--resume', '--cfg-options',
                             'train_cfg.max_iters=6', 'default_hooks.checkpoint.interval=3',
                             'experiment_name=sami_resume_test', *common_options(teacher_ckpt)])
    uninterrupted, continued = logged_losses(smoke_run), logged_losses(resumed)
    assert sorted(continued) == [4, 5, 6]
    for it in (4, 5, 6):
        assert continued[it] == pytest.approx(uninterrupted[it], rel=1e-5, abs=1e-6), it


def test_two_process_ddp_matches_one_process_on_the_same_global_batch(teacher_ckpt, tmp_path):
    config = tmp_path / 'fixed_views.py'
    config.write_text(
        f"_base_ = {SMOKE!r}\n"
        "train_pipeline = [dict(type='LoadImageFromFile'),\n"
        "                  dict(type='Resize', scale=(64, 64), keep_ratio=False),\n"
        "                  dict(type='PackInputs')]\n"
        "train_dataloader = dict(sampler=dict(seed=0), dataset=dict(pipeline=train_pipeline))\n")
    options = ['train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3',
               *common_options(teacher_ckpt)]
    single, ddp = str(tmp_path / 'single'), str(tmp_path / 'ddp')
    load_tool('train').main([str(config), '--work-dir', single, '--cfg-options',
                             'train_dataloader.batch_size=4', 'experiment_name=sami_single_test',
                             *options])
    run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', ddp, '--cfg-options',
         'train_dataloader.batch_size=2', *options],
        env=dict(PYTHON=sys.executable, PORT=str(free_port())))
    one, two = logged_losses(single), logged_losses(ddp)
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for it in one:
        assert two[it] == pytest.approx(one[it], rel=1e-4), it


def test_cached_targets_extraction_resume_same_view_and_training(teacher_ckpt, tmp_path, capsys):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    cache = str(tmp_path / 'cache')
    extract = load_tool('extract_teacher_features')
    # at the student's 64 px (not the teacher's native 256) the whole-image view's cached target
    # is the online one; tests/test_sami_targets.py covers crops of native-resolution caches
    argv = [SMOKE, '--out', cache, '--num-workers', '0', '--batch-size', '2', '--image-size', '64',
            '--records-per-shard', '2', '--verify', '--cfg-options',
            *common_options(teacher_ckpt, COCO_MINI)]
    extract.main(argv)
    assert '8 images stored, 0 missing' in capsys.readouterr().out
    (index,) = sorted(glob.glob(os.path.join(cache, 'shards', '*.json')))[:1]
    os.remove(index)
    extract.main(argv)
    output = capsys.readouterr().out
    assert '6 of 8 images already stored, 2 to do' in output and 'all shards intact' in output

    cfg = Config.fromfile(SMOKE)
    init_default_scope('mmpretrain')
    cfg.model.target_generator.checkpoint = teacher_ckpt
    teacher = MODELS.build(cfg.model.target_generator)
    preprocessor = MODELS.build(cfg.data_preprocessor)
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = COCO_MINI
    dataset_cfg.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(64, 64), keep_ratio=False, backend='pillow', interpolation='bicubic'),
        dict(type='LoadSAMITeacherTarget', cache_root=cache),
        dict(type='PackInputs', algorithm_keys=['sami_target'])]
    dataset = DATASETS.build(dataset_cfg)
    for i in range(len(dataset)):
        item = dataset[i]
        images = preprocessor(dict(inputs=item['inputs'][None], data_samples=[item['data_samples']]))
        online = teacher(images['inputs'], (4, 4))[0]
        cached = item['data_samples'].sami_target.float()
        torch.testing.assert_close(cached, online, rtol=1e-3, atol=float(online.abs().max()) * 2e-3)

    config = tmp_path / 'cached.py'
    config.write_text(
        f"_base_ = {SMOKE!r}\n"
        "model = dict(teacher_mode='cached')\n"
        "train_dataloader = dict(dataset=dict(pipeline=[\n"
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='SAMIRandomResizedCrop', scale=64, crop_ratio_range=(0.2, 1.0),\n"
        "         backend='pillow', interpolation='bicubic'),\n"
        "    dict(type='RandomFlip', prob=0.5),\n"
        f"    dict(type='LoadSAMITeacherTarget', cache_root={cache!r}),\n"
        "    dict(type='PackInputs', algorithm_keys=['sami_target'])]))\n")
    work_dir = str(tmp_path / 'cached_run')
    load_tool('train').main([str(config), '--work-dir', work_dir, '--cfg-options',
                             'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3',
                             'experiment_name=sami_cached_test', f'train_dataloader.dataset.data_root={COCO_MINI}'])
    losses = logged_losses(work_dir)
    assert sorted(losses) == [1, 2, 3] and all(0 < v < 100 for v in losses.values())


def test_finetune_smoke_loads_sami_weights_trains_and_tests(smoke_run, tmp_path):
    work_dir = str(tmp_path / 'finetune')
    options = [f'model.backbone.init_cfg.checkpoint={os.path.join(smoke_run, "iter_6.pth")}',
               'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
               'default_hooks.checkpoint.interval=2', 'experiment_name=sami_finetune_test']
    load_tool('train').main([FINETUNE_SMOKE, '--work-dir', work_dir, '--cfg-options', *options])
    metrics = load_tool('test').main([FINETUNE_SMOKE, os.path.join(work_dir, 'iter_2.pth'),
                                      '--work-dir', work_dir, '--cfg-options',
                                      'experiment_name=sami_finetune_eval'])
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
