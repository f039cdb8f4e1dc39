"""detectron2 entry point of ``tools/train.py`` and ``tools/test.py``: LazyConfig training and COCO evaluation.

The tools run mmengine configs unless told ``--framework detectron2`` (:func:`pop_framework`);
``main`` then loads the config with ``LazyConfig.load`` and refuses one that defines no LazyCall
``model``, and runs detectron2's trainer the way detectron2's ``tools/lazyconfig_train_net.py``
does, with :class:`SAMICheckpointer` for ``train.init_checkpoint`` and a CPU fallback (device
``cpu``, AMP off) when CUDA is absent.
"""
import argparse
import logging
import os
from typing import List, Sequence, Tuple

from ..cli import non_negative_int, positive_int
from ..fileio import atomic_write_json

FRAMEWORKS = ('mmengine', 'detectron2')

logger = logging.getLogger('detectron2')


def pop_framework(argv: Sequence[str]) -> Tuple[str, List[str]]:
    """The ``--framework {mmengine,detectron2}`` choice of ``tools/train.py``/``tools/test.py``
    (default mmengine) and the other arguments, which go to that framework's launcher.

    Args:
        argv: the tool's command line, without the program name.

    Returns:
        ``(framework, remaining arguments)``; an unknown framework exits with argparse's error.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument('--framework', choices=FRAMEWORKS, default='mmengine',
                        help='mmengine (mmpretrain, mmdet, mmseg configs) or detectron2 (LazyConfigs)')
    known, rest = parser.parse_known_args(list(argv))
    return known.framework, rest


def load_lazy_config(path: str):
    """``LazyConfig.load(path)``, refused unless it defines a LazyCall ``model`` (``_target_``):
    an mmengine config (``model = dict(type=...)``) loads as Python too, but is not one."""
    from detectron2.config import LazyConfig

    if not os.path.isfile(path):
        raise FileNotFoundError(f'config not found: {path}')
    cfg = LazyConfig.load(path)
    model = cfg.get('model')
    if not (hasattr(model, 'get') and model.get('_target_') is not None):
        raise ValueError(f'{path} is not a detectron2 LazyConfig: loading it gives no LazyCall `model` '
                         '(model = L(...)(...)); an mmengine config runs without --framework detectron2')
    return cfg


def evaluate(cfg, model) -> dict:
    """Runs ``cfg.dataloader.evaluator`` (COCOEvaluator in our configs) on ``cfg.dataloader.test``."""
    from detectron2.config import instantiate
    from detectron2.evaluation import inference_on_dataset, print_csv_format
    from detectron2.utils import comm

    if 'evaluator' not in cfg.dataloader:
        raise KeyError('the config has no dataloader.evaluator to evaluate with')
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
        os.makedirs(cfg.train.output_dir, exist_ok=True)
        atomic_write_json(os.path.join(cfg.train.output_dir, 'eval_results.json'), results, indent=1)
    return results


def _run(args: argparse.Namespace):
    """One process's work (``detectron2.engine.launch`` starts one per GPU)."""
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
    from detectron2.engine.defaults import create_ddp_model
    from detectron2.utils import comm
    from omegaconf import ListConfig

    from .checkpoint import SAMICheckpointer

    cfg = LazyConfig.apply_overrides(load_lazy_config(args.config_file), args.opts)
    if str(cfg.train.device).startswith('cuda') and not torch.cuda.is_available():
        logger.warning('CUDA is not available: running on CPU with train.amp.enabled=False')
        cfg.train.device = 'cpu'  # and no AMP: detectron2's AMPTrainer requires CUDA
        cfg.train.amp.enabled = cfg.train.ddp.fp16_compression = False
    default_setup(cfg, args)
    model = instantiate(cfg.model)
    if args.eval_only:
        model = create_ddp_model(model.to(cfg.train.device))
        checkpointer = SAMICheckpointer(model, cfg.train.output_dir)
        if not cfg.train.init_checkpoint and not (args.resume and checkpointer.has_checkpoint()):
            raise ValueError('--eval-only needs weights: train.init_checkpoint=PATH (or --resume with a '
                             f'checkpoint in {cfg.train.output_dir})')
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
        return evaluate(cfg, model)

    logger.info(f'Model:\n{model}')
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    # omegaconf lists (AdamW betas) as tuples, so checkpoints load with torch.load(weights_only=True)
    for hyperparameters in [optimizer.defaults, *optimizer.param_groups]:
        hyperparameters.update({key: tuple(value) for key, value in hyperparameters.items()
                                if isinstance(value, ListConfig)})
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = SAMICheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main_process else None,
    ])
    resuming = args.resume and checkpointer.has_checkpoint()
    if not cfg.train.init_checkpoint and not resuming:
        logger.warning('train.init_checkpoint is empty: the backbone starts from random weights; pass '
                       'train.init_checkpoint=<SAMI checkpoint | EfficientSAM checkpoint | zoo://NAME>')
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    trainer.train(trainer.iter + 1 if resuming else 0, cfg.train.max_iter)


def _missing_local_file(value) -> bool:
    """True for a local checkpoint path that does not exist (not for '', URLs or ``zoo://`` names)."""
    return bool(value) and str(value) != 'None' and '://' not in str(value) and not os.path.isfile(str(value))


def main(argv: List[str]) -> int:
    """``CONFIG [--num-gpus N] [--num-machines N --machine-rank R --dist-url URL] [--resume]
    [--eval-only] [key=value ...]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        description='Train (or with --eval-only evaluate) a detectron2 LazyConfig (tools/train.py and '
                    'tools/test.py with --framework detectron2).',
        epilog='Example: tools/train.py --framework detectron2 configs/detectron2/vitdet/sami_ti_coco.py '
               '--num-gpus 8 train.init_checkpoint=work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth')
    parser.add_argument('config_file', metavar='CONFIG', help='detectron2 LazyConfig (.py)')
    parser.add_argument('--num-gpus', type=positive_int, default=1, help='GPUs per machine (processes to start)')
    parser.add_argument('--num-machines', type=positive_int, default=1)
    parser.add_argument('--machine-rank', type=non_negative_int, default=0)
    parser.add_argument('--dist-url', default='auto',
                        help='initialisation URL of the process group ("auto" on one machine)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the last checkpoint in train.output_dir (when there is one)')
    parser.add_argument('--eval-only', action='store_true',
                        help='only evaluate the weights of train.init_checkpoint (or, with --resume, '
                             'the last checkpoint) with the config\'s evaluator')
    parser.add_argument('opts', nargs='*', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. train.init_checkpoint=PATH (before or after the options)')
    args = parser.parse_intermixed_args(argv)
    # a missing local file fails now, not after starting processes and the model; detectron2 also
    # accepts the value as a Python literal
    overrides = {key: value.strip().strip('\'"') for key, _, value in (o.partition('=') for o in args.opts)}
    if _missing_local_file(overrides.get('train.init_checkpoint')):
        raise FileNotFoundError(f'train.init_checkpoint not found: {overrides["train.init_checkpoint"]}')
    from ._dependency import require_detectron2
    require_detectron2()
    from detectron2.engine import launch

    default = (load_lazy_config(args.config_file).get('train') or {}).get('init_checkpoint')
    if 'train.init_checkpoint' not in overrides and not args.resume and _missing_local_file(default):
        raise FileNotFoundError(
            f'train.init_checkpoint of {args.config_file} not found: {default} (the paper starts from a SAMI '
            'pretraining checkpoint: train one with tools/train.py configs/sami/..., pass '
            'train.init_checkpoint=PATH, or use the _efficientsam-init config)')

    launch(_run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


def main_eval(argv: List[str]) -> int:
    """``tools/test.py`` form: ``CONFIG [CHECKPOINT] [options and key=value ...]``, i.e.
    ``main([CONFIG, '--eval-only', 'train.init_checkpoint=CHECKPOINT', ...])``."""
    argv = list(argv)
    if len(argv) >= 2 and not argv[1].startswith('-') and '=' not in argv[1]:
        argv = [argv[0], f'train.init_checkpoint={argv[1]}'] + argv[2:]
    return main(['--eval-only'] + argv)
