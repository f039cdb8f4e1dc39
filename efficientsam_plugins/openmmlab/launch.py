"""Config handling shared by ``tools/train.py`` and ``tools/test.py`` for every toolbox.

Nothing here names a toolbox: the registries come from the config's ``default_scope`` and its
``custom_imports``, so mmpretrain, mmdet and mmseg configs all go through the same code.
"""
import glob
import json
import logging
import os
import re
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from ..checkpoint import check_checkpoint_file
from . import hooks  # noqa: F401  (registers AtomicCheckpointHook, which load_config puts in place)
from .checkpoints import enable_weights_only_checkpoints

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
CONFIG_EXTENSIONS = ('.py', '.json', '.yml', '.yaml')


def load_config(config: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
                resume: Optional[str] = None, amp: bool = False, launcher: str = 'none',
                auto_scale_lr: bool = False, checkpoint: Optional[str] = None) -> Config:
    """The config of ``config`` with the launcher's command-line choices applied (``cfg_options``
    last). ``resume``: ``'auto'`` (the work dir's latest checkpoint) or a path; ``checkpoint``: the
    weights to test. Without CUDA, a config asking for AMP (the GPU recipes) trains in fp32 with a
    warning, and distributed runs use gloo."""
    if not os.path.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    if not config.endswith(CONFIG_EXTENSIONS):
        raise ValueError(f'{config} is not a config file: expected one of {", ".join(CONFIG_EXTENSIONS)}')
    try:
        cfg = Config.fromfile(config)
    except (SyntaxError, NameError) as err:  # raised by the config's own code, or its _base_ files'
        raise ValueError(f'cannot read config {config}: {type(err).__name__}: {err}') from err
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', os.path.splitext(os.path.basename(config))[0])
    if amp:
        if not torch.cuda.is_available():
            raise ValueError('--amp needs a CUDA device; this machine has none')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper' and not torch.cuda.is_available():
        print_log('no CUDA device: training in fp32 (OptimWrapper) instead of the config\'s AMP',
                  logger='current', level=logging.WARNING)
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise ValueError(f'{config} has no auto_scale_lr = dict(base_batch_size=...) to enable')
        cfg.auto_scale_lr.enable = True
    if checkpoint is not None:
        check_checkpoint_file(checkpoint)
        cfg.load_from = checkpoint
    if launcher != 'none' and not torch.cuda.is_available():
        # mmengine assumes GPUs: it picks nccl and passes device_ids=[LOCAL_RANK], which DDP rejects
        # for a CPU module
        env_cfg = cfg.get('env_cfg') or {}
        cfg.env_cfg = dict(env_cfg, dist_cfg=dict(env_cfg.get('dist_cfg') or {}, backend='gloo'))
        cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False), device_ids=None)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if resume is not None:  # after the options, which may move the work dir
        cfg.load_from = resume_checkpoint(resume, cfg.work_dir)
        cfg.resume = cfg.load_from is not None
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(hook, dict) and hook.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'  # the last good checkpoint survives a killed save
    # mmengine builds collate_fn with functools.partial(fn, **cfg), not a registry, so the _scope_
    # that configs inherited as ``package::...`` attach would reach the function as an argument
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if isinstance(loader, dict) and isinstance(loader.get('collate_fn'), dict):
            loader['collate_fn'].pop('_scope_', None)
    return cfg


CHECKPOINT_NAME = re.compile(r'(epoch|iter)_\d+\.pth')  # CheckpointHook's default filename_tmpl


def newest_complete_checkpoint(folder: str) -> Optional[str]:
    """The newest (by modification time) complete checkpoint that a run in ``folder`` saved: the one
    its ``last_checkpoint`` names and the ``epoch_N.pth`` / ``iter_N.pth`` beside it; incomplete or
    missing ones are skipped with a warning naming them. None when there is none."""
    candidates = {path for path in glob.glob(os.path.join(glob.escape(folder), '*.pth'))
                  if CHECKPOINT_NAME.fullmatch(os.path.basename(path))}
    last = os.path.join(folder, 'last_checkpoint')
    if os.path.isfile(last):
        with open(last, encoding='utf-8') as stream:
            named = stream.read().strip()
        if named and not os.path.isfile(named):
            _warn(f'{named}, named by {last}, does not exist; looking for the newest complete checkpoint')
        elif named:
            candidates.add(named)
            candidates.update(path for path in glob.glob(os.path.join(glob.escape(os.path.dirname(named)), '*.pth'))
                              if CHECKPOINT_NAME.fullmatch(os.path.basename(path)))
    for path in sorted(candidates, key=lambda p: os.stat(p).st_mtime_ns, reverse=True):
        try:
            check_checkpoint_file(path)
        except ValueError:
            _warn(f'skipping {path}: an incomplete checkpoint (the run was stopped while writing it, or the '
                  f'file was damaged)')
            continue
        return path
    return None


def resume_checkpoint(resume: str, work_dir: str) -> Optional[str]:
    """What ``--resume`` resumes from: ``'auto'``, the newest complete checkpoint of ``work_dir``
    (None: there is none, training starts afresh, with a warning); a path, that file, or where it is
    incomplete the newest complete checkpoint beside it (with a warning naming both)."""
    if resume == 'auto':
        found = newest_complete_checkpoint(work_dir)
        if found is None:
            _warn(f'--resume: no complete checkpoint in {work_dir}; training from the start')
        return found
    try:
        check_checkpoint_file(resume, 'checkpoint to resume from')
    except ValueError as err:
        found = newest_complete_checkpoint(os.path.dirname(os.path.abspath(resume)))
        if found is None or os.path.samefile(found, resume):
            raise ValueError(f'{err}; nor does its folder hold a complete checkpoint to resume from instead') from None
        _warn(f'--resume {resume} is incomplete; resuming from {found}, the newest complete checkpoint beside it')
        return found
    return resume


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def init_distributed(launcher: str, backend: Optional[str] = None) -> None:
    """Starts the process group for ``launcher`` (nothing for ``'none'`` or if already started);
    without CUDA here, with gloo, because mmengine's ``init_dist`` would call ``torch.cuda.set_device``."""
    import datetime

    import torch.distributed as dist
    if launcher == 'none' or dist.is_initialized():
        return
    if torch.cuda.is_available():
        from mmengine.dist import init_dist
        init_dist(launcher, backend=backend or 'nccl', timeout=1800)
    elif launcher == 'pytorch':
        dist.init_process_group(backend=backend or 'gloo', timeout=datetime.timedelta(seconds=1800))
    else:
        raise ValueError(f'launcher {launcher!r} needs CUDA here; use --launcher pytorch (torchrun)')


def build_runner(cfg: Config):
    """The config's runner (``runner_type`` if set, else mmengine's ``Runner``)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    enable_weights_only_checkpoints()
    if cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available():
        init_distributed(cfg.launcher, cfg.env_cfg.dist_cfg.get('backend', 'gloo'))
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def train(cfg: Config) -> None:
    """Builds the config's runner and trains. A training set that comes out empty, which mmengine's
    datasets report as numpy's ``need at least one array to concatenate``, is named instead: the
    annotation file with an empty ``annotations`` (or ``data_list``) list, else the files whose
    images were all filtered out."""
    runner = build_runner(cfg)
    try:
        runner.train()
    except ValueError as err:
        if 'need at least one array to concatenate' not in str(err):
            raise
        raise ValueError(_empty_dataset_message(cfg.train_dataloader.dataset)) from err


def _annotation_files(dataset: dict) -> List[str]:
    """The ``ann_file`` paths of a dataset config (wrappers' ``dataset`` / ``datasets`` included)."""
    files, pending = [], [dataset]
    while pending:
        item = pending.pop()
        if not isinstance(item, dict):
            continue
        if item.get('ann_file'):
            files.append(os.path.join(item.get('data_root') or '', item['ann_file']))
        pending += [item.get('dataset')] + list(item.get('datasets') or [])
    return files


def _empty_dataset_message(dataset: dict) -> str:
    files = _annotation_files(dataset)
    for path in files:
        try:
            with open(path, encoding='utf-8') as stream:
                data = json.load(stream)
        except (OSError, ValueError):
            continue
        for key in ('annotations', 'data_list'):
            if isinstance(data, dict) and data.get(key) == []:
                return f'the training set is empty: annotation file {path} has an empty "{key}" list'
    return (f'the training set is empty: no image of {", ".join(files) or "its dataset"} is left after '
            f'filtering (images without annotations are dropped; see the dataset\'s filter_cfg)')


class ConfigOptionsAction(DictAction):
    """mmengine's ``DictAction`` with a usage error for a malformed ``key=value`` (not its bare
    ValueError or AssertionError)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values or ():
            if '=' not in item:
                parser.error(f'argument {option_string}: {item!r} is not key=value')
        try:
            super().__call__(parser, namespace, values, option_string)
        except (ValueError, AssertionError) as err:
            parser.error(f'argument {option_string}: cannot parse {" ".join(values)!r}: {err}')


def add_common_arguments(parser, options: Sequence[str] = ('work-dir', 'cfg-options', 'launcher')):
    if 'work-dir' in options:
        parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    if 'cfg-options' in options:
        parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction, default=None,
                            help='override config entries: key=value (lists: key="[a,b]")')
    if 'launcher' in options:
        parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
        parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser
