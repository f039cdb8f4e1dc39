"""A few AMP training iterations of every full config on one GPU, then the throughput benchmark:
one table of iterations/s, peak memory and pass/fail, so that minutes on a GPU measure instead of debug.

    tools/gpu_check.sh                          # on a GPU machine: all checks, under 10 minutes
    tools/gpu_check.sh --only vitdet_b sami_b_1024px --iters 10
    tools/gpu_check.sh --dry-run                # on a CPU: the same code path at smoke sizes

Every check trains the full config (full model, full input size, the config's per-GPU batch; the
detectron2 ones 4 images, not their 64-image cluster total) for ``--warmup`` + ``--iters`` iterations
on the bundled ``data/coco_mini`` (real datasets are not needed): random initialisation instead of the
configs' pretraining checkpoints, no validation or checkpoints, an infinite sampler so that batches
stay full on 8 images. Iterations/s is timed over the ``--iters`` after warm-up (CUDA synchronised);
peak memory is ``torch.cuda.max_memory_allocated``. Each check runs in its own process, so one
failure (an out-of-memory) does not stop the others, with a per-check timeout and an overall
``--budget``; the last ``--log-lines`` lines of a failed check's log are printed.

``--dry-run`` runs the configs' CPU smoke variants (same models at tiny sizes; the Ti smoke config
with the S/B width for S and B) through the same overrides, one iteration each (detectron2: 4, its timer
skips 3), fp32, all in one worker process (imports dominate on a CPU), then the benchmark at tiny sizes;
memory is then the worker's peak resident set size (``ru_maxrss``, a high-water mark over the checks run so far).
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, REPO)
from efficientsam_plugins.cli import non_negative_int, positive_int, run_tool  # noqa: E402

COCO_MINI = os.path.join(REPO, 'data', 'coco_mini')
D2_DATASETS = ('gpu_check_coco_mini_train', 'gpu_check_coco_mini_val')
D2_TIMER_WARMUP = 3  # detectron2's IterationTimer leaves its first 3 iterations out of its speed
BENCHMARK_RESERVE = 90  # seconds of --budget kept for the throughput benchmark
D2_SPEED = re.compile(r'Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)')


def _coco_mini_detection(cfg) -> dict:
    return {'train_dataloader.dataset.data_root': COCO_MINI + '/'}


def _coco_mini_semantic(cfg) -> dict:
    return {'train_dataloader.dataset': dict(
        type='SAMICocoSemanticDataset', data_root=COCO_MINI,
        data_prefix=dict(img_path='train2017', seg_map_path='semantic/train2017'))}


def _coco_mini_images(cfg) -> dict:
    """The images as an unlabelled folder (SAMI needs no labels), with the config's own pipeline."""
    return {'train_dataloader.dataset': dict(
        _delete_=True, type='CustomDataset', data_root=COCO_MINI, data_prefix='train2017', with_label=False,
        pipeline=cfg.train_dataloader.dataset.pipeline)}


def _coco_mini_instances(cfg) -> dict:
    return {'train_dataloader.dataset': dict(
        data_root=None, ann_file=os.path.join(COCO_MINI, 'annotations', 'instances_train2017.json'),
        img_dir=os.path.join(COCO_MINI, 'train2017'))}


@dataclass(frozen=True)
class Check:
    """One row: ``config`` trained on the GPU, ``smoke`` (with ``smoke_options``) in the dry run, both
    with ``data(cfg)`` (the bundled images instead of the config's dataset) and ``options``."""
    name: str
    config: str
    smoke: str
    toolbox: str = 'mmengine'  # or 'detectron2'
    data: Optional[Callable[[object], dict]] = None
    options: Dict[str, object] = field(default_factory=dict)  # random initialisation
    smoke_options: Dict[str, object] = field(default_factory=dict)


def _checks() -> List[Check]:
    widths = {'ti': 192, 's': 384, 'b': 768}
    checks = [Check(f'vitdet_{arch}', f'configs/vitdet/sami_{arch}_coco.py', 'configs/vitdet/sami_ti_coco_smoke.py',
                    data=_coco_mini_detection, options={'model.backbone.init_cfg': None},
                    smoke_options={'model.backbone.arch': arch, 'model.neck.backbone_channel': width})
              for arch, width in widths.items()]
    checks += [Check(f'detectron2_vitdet_{arch}', f'configs/detectron2/vitdet/sami_{arch}_coco.py',
                     'configs/detectron2/vitdet/sami_ti_coco_smoke.py', toolbox='detectron2',
                     smoke_options={'model.backbone.net.arch': arch})
               for arch in widths]
    sami = 'configs/sami/sami_vit-base_sam-vit-h{}_in1k-400e{}.py'
    random_teacher = {'model.target_generator.checkpoint': None}
    checks += [
        Check('mask2former_ti_512', 'configs/mask2former/sami_ti_ade20k.py',
              'configs/mask2former/sami_ti_ade20k_smoke.py', data=_coco_mini_semantic,
              options={'model.backbone.init_cfg': None}),
        Check('sami_b_teacher_224', sami.format('', ''), sami.format('', '_smoke'), data=_coco_mini_images,
              options=random_teacher),
        Check('sami_b_teacher_1024', sami.format('-1024px', ''), sami.format('-1024px', '_smoke'),
              data=_coco_mini_images, options=random_teacher),
        Check('efficientsam_ti_sa1b_1024', 'configs/efficientsam/efficientsam_ti_sa1b.py',
              'configs/efficientsam/efficientsam_ti_sa1b_smoke.py', data=_coco_mini_instances,
              options={'model.encoder_init': None, 'model.decoder_init': None}),
        Check('squeezesam_sa1b_512', 'configs/squeezesam/squeezesam_sa1b.py',
              'configs/squeezesam/squeezesam_sa1b_smoke.py', data=_coco_mini_instances),
    ]
    return checks


CHECKS = {check.name: check for check in _checks()}


# ----------------------------------------------------------------------------------------- worker


def _synchronize() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _harness_options(iterations: int, batch: Optional[int], name: str) -> dict:
    """What turns a training config into a short timed run: an iteration loop without validation or
    checkpoints, a warm-up lr (a random model at the full lr could overflow), full batches."""
    options = {
        'train_cfg': dict(_delete_=True, type='IterBasedTrainLoop', max_iters=iterations, val_interval=iterations + 1),
        'val_cfg': None, 'val_dataloader': None, 'val_evaluator': None,
        'test_cfg': None, 'test_dataloader': None, 'test_evaluator': None,
        'param_scheduler': [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=iterations)],
        'default_hooks.checkpoint': None, 'default_hooks.logger': dict(type='LoggerHook', interval=1),
        'log_processor': dict(type='LogProcessor', by_epoch=False, window_size=1),
        'train_dataloader.sampler': dict(_delete_=True, type='InfiniteSampler', shuffle=True),
        'load_from': None, 'resume': False, 'experiment_name': f'gpu_check_{name}_{time.strftime("%H%M%S")}',
    }
    if batch is not None:
        options['train_dataloader.batch_size'] = batch
    return options


def _iteration_timer(warmup: int):
    """An mmengine hook timing the training iterations after the first ``warmup`` (CUDA synchronised):
    from the start of the first timed one to the end of the last."""
    from mmengine.hooks import Hook

    class IterationTimer(Hook):
        priority = 'LOWEST'

        def __init__(self) -> None:
            self.starts: List[float] = []
            self.ends: List[float] = []

        def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
            _synchronize()
            self.starts.append(time.perf_counter())

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            _synchronize()
            self.ends.append(time.perf_counter())

        def iterations_per_second(self) -> float:
            return (len(self.ends) - warmup) / (self.ends[-1] - self.starts[warmup])

    return IterationTimer()


def _run_mmengine(check: Check, config: str, options: dict, args, work_dir: str) -> float:
    import torch
    from mmengine.config import Config

    from efficientsam_plugins.openmmlab.launch import build_runner, load_config
    iterations = args.warmup + args.iters
    base = Config.fromfile(config)
    amp = torch.cuda.is_available() and base.optim_wrapper.get('type') != 'AmpOptimWrapper'
    harness = _harness_options(iterations, args.batch.get(check.name), check.name)
    cfg = load_config(config, work_dir=work_dir, amp=amp,
                      cfg_options={**(check.data(base) if check.data else {}), **options, **harness})
    runner = build_runner(cfg)
    timer = _iteration_timer(args.warmup)
    runner.register_hook(timer)
    runner.train()
    if len(timer.ends) != iterations:
        raise RuntimeError(f'{len(timer.ends)} of {iterations} iterations ran')
    return timer.iterations_per_second()


def _register_d2_coco_mini(max_val_images: Optional[int]) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json
    for name, split in zip(D2_DATASETS, ('train2017', 'val2017')):
        if name in DatasetCatalog.list():
            continue
        json_file = os.path.join(COCO_MINI, 'annotations', f'instances_{split}.json')
        image_root = os.path.join(COCO_MINI, split)
        limit = max_val_images if split == 'val2017' else None
        DatasetCatalog.register(name, lambda j=json_file, r=image_root, n=name, k=limit: load_coco_json(j, r, n)[:k])
        MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type='coco')


def _run_detectron2(check: Check, config: str, options: dict, args, work_dir: str) -> float:
    """detectron2's own launcher in this process; its IterationTimer's logged speed is the figure
    (detectron2 always evaluates after the last iteration: on 2 images in the dry run)."""
    import logging

    from efficientsam_plugins.detectron2.launch import main as detectron2_main
    _register_d2_coco_mini(2 if args.dry_run else None)
    batch = args.batch.get(check.name, 2 if args.dry_run else 4)
    overrides = {'dataloader.train.dataset.names': D2_DATASETS[0], 'dataloader.test.dataset.names': D2_DATASETS[1],
                 'dataloader.train.total_batch_size': batch, 'train.max_iter': D2_TIMER_WARMUP + args.iters,
                 'train.output_dir': work_dir, 'train.init_checkpoint': '', 'train.eval_period': 0,
                 'train.log_period': 1, 'train.checkpointer.period': 10 ** 9, **options}
    speeds: List[str] = []

    class SpeedRecorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            speeds.extend(D2_SPEED.findall(record.getMessage()))

    logger = logging.getLogger('detectron2.engine.hooks')
    recorder = SpeedRecorder()
    logger.addHandler(recorder)
    try:
        detectron2_main([config] + [f'{key}={value!r}' if isinstance(value, str) else f'{key}={value}'
                                    for key, value in overrides.items()])
    finally:
        logger.removeHandler(recorder)
    if not speeds:
        raise RuntimeError('detectron2 logged no training speed')
    return 1.0 / float(speeds[-1][1])


def run_checks(names: List[str], args) -> None:
    """The worker: runs ``names`` one after the other, writing ``<result-dir>/<name>.json`` for each."""
    import resource

    import torch
    for name in names:
        check = CHECKS[name]
        config = check.smoke if args.dry_run else check.config
        options = {**check.options, **(check.smoke_options if args.dry_run else {})}
        work_dir = os.path.join(args.work_dir, name)
        os.makedirs(work_dir, exist_ok=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        result = dict(name=name, config=config)
        start = time.perf_counter()
        try:
            run = _run_detectron2 if check.toolbox == 'detectron2' else _run_mmengine
            speed = run(check, os.path.join(REPO, config), options, args, work_dir)
            result.update(status='pass', iterations_per_s=speed)
        except Exception as err:  # noqa: BLE001 - every failure becomes its row; the traceback goes to the log
            traceback.print_exc()
            result.update(status='fail', error=f'{type(err).__name__}: {" ".join(str(err).split())}'[:160])
        if torch.cuda.is_available():
            result.update(memory=torch.cuda.max_memory_allocated(), memory_kind='cuda')
        else:
            result.update(memory=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, memory_kind='rss')
        result['seconds'] = time.perf_counter() - start
        with open(os.path.join(args.result_dir, f'{name}.json'), 'w', encoding='utf-8') as file:
            json.dump(result, file)
        print(f'gpu_check: {name}: {result["status"]}', flush=True)


# ----------------------------------------------------------------------------------------- driver


def _tail(path: str, lines: int) -> str:
    with open(path, encoding='utf-8', errors='replace') as file:
        return ''.join(file.readlines()[-lines:])


def _worker_command(names: List[str], args, result_dir: str) -> List[str]:
    command = [sys.executable, os.path.abspath(__file__), '--worker', *names, '--work-dir', args.work_dir,
               '--result-dir', result_dir, '--iters', str(args.iters), '--warmup', str(args.warmup)]
    command += ['--batch', *[f'{k}={v}' for k, v in args.batch.items()]] if args.batch else []
    return command + (['--dry-run'] if args.dry_run else [])


def _run_worker(names: List[str], args, result_dir: str, log_path: str, timeout: float) -> Optional[str]:
    """Runs one worker; the reason it died (exit status, timeout), or None."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if args.dry_run:
        env.setdefault('OMP_NUM_THREADS', '1')  # a shared CPU: no spinning threads
    with open(log_path, 'w', encoding='utf-8') as log:
        try:
            status = subprocess.run(_worker_command(names, args, result_dir), cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return f'timed out after {timeout:.0f} s'
    return None if status == 0 else f'worker exited with status {status}'


def _benchmark(args, log_path: str, json_path: str, timeout: float) -> dict:
    command = [sys.executable, os.path.join(REPO, 'tools', 'benchmark_throughput.py'), '--json', json_path]
    command += (['--device', 'cpu', '--tiny', '--max-batch', '1', '--runs', '1', '--warmup', '0'] if args.dry_run else
                ['--device', 'cuda', '--precision', args.precision, '--max-batch', str(args.max_batch), '--runs', '5'])
    start = time.perf_counter()
    with open(log_path, 'w', encoding='utf-8') as log:
        try:
            status = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            status = f'timed out after {timeout:.0f} s'
    row = dict(name='throughput_benchmark', config='tools/benchmark_throughput.py',
               seconds=time.perf_counter() - start)
    if status != 0:
        return dict(row, status='fail', error=str(status) if isinstance(status, str) else f'exit status {status}')
    with open(json_path, encoding='utf-8') as file:
        rows = json.load(file)['rows']
    best = {}
    for entry in rows:
        if entry['images_per_s'] > best.get(entry['model'], 0.0):
            best[entry['model']] = entry['images_per_s']
    return dict(row, status='pass', memory=max(entry['peak_memory'] for entry in rows),
                memory_kind=rows[0]['memory_kind'],
                note='best ' + ', '.join(f'{model} {ips:.3g} img/s' for model, ips in best.items()))


def _format_memory(row: dict) -> str:
    if row.get('memory') is None:
        return '-'
    return f'{row["memory"] / 2 ** 30:.2f} GiB' + (' (RSS)' if row.get('memory_kind') == 'rss' else '')


def print_table(rows: List[dict], dry_run: bool) -> None:
    memory = 'peak RSS of the worker (high-water)' if dry_run else 'peak GPU memory'
    print(f'\n| check | config | iterations/s | {memory} | status |\n|---|---|---:|---:|---|')
    for row in rows:
        speed = f'{row["iterations_per_s"]:.2f}' if row.get('iterations_per_s') else '-'
        status = row['status'] + (f': {row["error"]}' if row.get('error') else '') + (
            f' ({row["note"]})' if row.get('note') else '')
        print(f'| {row["name"]} | {row["config"]} | {speed} | {_format_memory(row)} | {status} |', flush=True)


def _parse_batches(items: List[str]) -> Dict[str, int]:
    batches = {}
    for item in items:
        name, _, value = item.partition('=')
        if name not in CHECKS or not value.isdigit() or int(value) < 1:
            raise ValueError(f'--batch {item!r}: expected CHECK=N with a positive N and CHECK one of '
                             f'{", ".join(CHECKS)}')
        batches[name] = int(value)
    return batches


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dry-run', action='store_true', help='CPU: smoke sizes, 1 iteration, one worker')
    parser.add_argument('--only', nargs='+', choices=list(CHECKS), help='run only these checks')
    parser.add_argument('--iters', type=positive_int, default=None, help='timed iterations (GPU 5, dry run 1)')
    parser.add_argument('--warmup', type=non_negative_int, default=None,
                        help='untimed iterations first (GPU 2, dry run 0; detectron2 always 3)')
    parser.add_argument('--batch', nargs='+', default=[], metavar='CHECK=N', help='per-GPU batch of a check')
    parser.add_argument('--budget', type=positive_int, default=None,
                        help='seconds for everything (GPU default 540, dry run none); later checks are '
                             'skipped once it is spent')
    parser.add_argument('--check-timeout', type=positive_int, default=150, help='seconds per check (GPU)')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16'], default='bf16', help='of the benchmark')
    parser.add_argument('--max-batch', type=positive_int, default=32, help='largest batch of the benchmark sweep')
    parser.add_argument('--no-benchmark', action='store_true', help='skip the throughput benchmark')
    parser.add_argument('--work-dir', help='logs and run folders (default: a new folder under work_dirs/gpu_check)')
    parser.add_argument('--log-lines', type=non_negative_int, default=40, help='log lines shown for a failure')
    parser.add_argument('--worker', nargs='+', choices=list(CHECKS), help=argparse.SUPPRESS)
    parser.add_argument('--result-dir', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch = _parse_batches(args.batch)
    args.iters = args.iters or (1 if args.dry_run else 5)
    args.warmup = (0 if args.dry_run else 2) if args.warmup is None else args.warmup
    args.budget = args.budget or (10 ** 6 if args.dry_run else 540)
    if args.worker:
        run_checks(args.worker, args)
        return 0

    import torch
    if not args.dry_run and not torch.cuda.is_available():
        raise ValueError('no CUDA device here: run tools/gpu_check.sh --dry-run on a CPU machine')
    args.work_dir = os.path.abspath(args.work_dir or os.path.join(
        REPO, 'work_dirs', 'gpu_check', time.strftime('%Y%m%d_%H%M%S') + ('_dry-run' if args.dry_run else '')))
    os.makedirs(args.work_dir, exist_ok=True)
    device = 'CPU (dry run: smoke sizes, fp32)' if args.dry_run else f'{torch.cuda.get_device_name(0)} (AMP)'
    print(f'gpu_check on {device}, torch {torch.__version__}: {args.warmup} warm-up + {args.iters} timed '
          f'iterations per check; logs in {args.work_dir}', flush=True)

    start = time.perf_counter()
    rows: Dict[str, dict] = {}
    runnable = []
    has_detectron2 = importlib.util.find_spec('detectron2') is not None
    for name in args.only or list(CHECKS):
        check = CHECKS[name]
        config = check.smoke if args.dry_run else check.config
        if not os.path.isfile(os.path.join(REPO, config)):
            rows[name] = dict(name=name, config=config, status='skipped', error='config missing')
        elif check.toolbox == 'detectron2' and not has_detectron2:
            rows[name] = dict(name=name, config=config, status='skipped', error='detectron2 not installed')
        else:
            runnable.append(name)
    groups = [runnable] if args.dry_run else [[name] for name in runnable]
    reserve = 0 if args.no_benchmark else BENCHMARK_RESERVE
    with tempfile.TemporaryDirectory() as result_dir:
        for group in filter(None, groups):
            left = args.budget - reserve - (time.perf_counter() - start)
            if left < 30:
                rows.update({name: dict(name=name, config=CHECKS[name].config, status='skipped',
                                        error='time budget spent') for name in group})
                continue
            log_path = os.path.join(args.work_dir, ('dry_run' if args.dry_run else group[0]) + '.log')
            timeout = left if args.dry_run else min(args.check_timeout, left)
            print(f'gpu_check: running {", ".join(group)} ...', flush=True)
            died = _run_worker(group, args, result_dir, log_path, timeout)
            for name in group:
                path = os.path.join(result_dir, f'{name}.json')
                if os.path.isfile(path):
                    with open(path, encoding='utf-8') as file:
                        rows[name] = json.load(file)
                else:
                    config = CHECKS[name].smoke if args.dry_run else CHECKS[name].config
                    rows[name] = dict(name=name, config=config, status='fail', error=died or 'no result written')
            if any(rows[name]['status'] == 'fail' for name in group) and args.log_lines:
                print(f'--- last {args.log_lines} lines of {log_path}\n{_tail(log_path, args.log_lines)}---',
                      flush=True)
        ordered = [rows[name] for name in (args.only or list(CHECKS))]
        if not args.no_benchmark:
            left = args.budget - (time.perf_counter() - start)
            if left < 30:
                ordered.append(dict(name='throughput_benchmark', config='tools/benchmark_throughput.py',
                                    status='skipped', error='time budget spent'))
            else:
                log_path = os.path.join(args.work_dir, 'throughput_benchmark.log')
                ordered.append(_benchmark(args, log_path, os.path.join(result_dir, 'throughput.json'), left))
                print(_tail(log_path, 30), flush=True)
    print_table(ordered, args.dry_run)
    print(f'total {time.perf_counter() - start:.0f} s', flush=True)
    return 1 if any(row['status'] == 'fail' for row in ordered) else 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
