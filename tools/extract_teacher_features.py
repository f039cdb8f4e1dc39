"""Run a SAMI config's teacher once over its training images and store the features.

    python tools/extract_teacher_features.py CONFIG --out DIR [--image-size N] [--map-size N]
        [--batch-size 16] [--num-workers 4] [--records-per-shard 256] [--device cpu|cuda]
        [--amp] [--verify] [--cfg-options ...] [--launcher none|pytorch]
    torchrun --nproc_per_node N tools/extract_teacher_features.py CONFIG --out DIR --launcher pytorch

Each image, resized as a whole to ``--image-size`` (default: the student's ``img_size``), goes
through ``model.target_generator`` (the teacher resizes it further if it runs at a fixed
resolution) after the config's normalisation; its dense map (or, with ``--map-size``, the map
resampled to that grid) is stored in fp16. Training with ``model.teacher_mode='cached'`` and
``LoadSAMITeacherTarget`` cuts each augmented view's targets from these maps (see that class).

The store is sharded per rank; a rerun skips images already stored (resume), shards left
incomplete by an interruption are discarded and recomputed, and ``--verify`` re-hashes everything.
"""
import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from efficientsam_plugins.cli import CONFIG_ERRORS, non_negative_int, positive_int, run_tool, torch_device  # noqa: E402
from efficientsam_plugins.models.sami import (FeatureCacheWriter, TeacherFeatureCache,  # noqa: E402
                                              ensure_meta, image_key, incomplete_shards,
                                              resize_to_grid)


def parse_args(argv=None):
    from efficientsam_plugins.mmengine import add_common_arguments  # here: run_tool reports a missing mmengine
    parser = argparse.ArgumentParser(description='Cache a SAMI teacher\'s features of a dataset')
    parser.add_argument('config', help='SAMI config (its model.target_generator and training data)')
    parser.add_argument('--out', required=True, help='cache directory (created or resumed)')
    parser.add_argument('--image-size', type=positive_int, help='whole-image input size (default: student img_size)')
    parser.add_argument('--map-size', type=positive_int, help='store maps resampled to this grid (default: native)')
    parser.add_argument('--batch-size', type=positive_int, default=16)
    parser.add_argument('--num-workers', type=non_negative_int, default=4)
    parser.add_argument('--records-per-shard', type=positive_int, default=256)
    parser.add_argument('--device', type=torch_device, default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='run the teacher in fp16 autocast (CUDA)')
    parser.add_argument('--verify', action='store_true', help='re-hash every shard at the end')
    add_common_arguments(parser, options=('cfg-options', 'launcher'))
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_parts(cfg, image_size):
    """The teacher, the normaliser and the deterministic whole-image dataset of ``cfg``."""
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    teacher = MODELS.build(cfg.model.target_generator)
    preprocessor_cfg = copy.deepcopy(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor'))
    if preprocessor_cfg is None:
        raise ValueError('the config has no data_preprocessor (the normalisation of the images)')
    preprocessor_cfg.setdefault('type', 'SelfSupDataPreprocessor')
    preprocessor = MODELS.build(preprocessor_cfg)
    if not (cfg.get('train_dataloader') or {}).get('dataset'):
        raise ValueError('the config has no train_dataloader.dataset (the images to extract from)')
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(image_size, image_size), keep_ratio=False, backend='pillow',
             interpolation='bicubic'),
        dict(type='PackInputs', meta_keys=('img_path', 'ori_shape')),
    ]
    return teacher, preprocessor, DATASETS.build(dataset_cfg), preprocessor_cfg


def main(argv=None):
    from efficientsam_plugins.mmengine import init_distributed, load_config
    args = parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f'--out {args.out} is a file; give a folder for the cache')
    cfg = load_config(args.config, cfg_options=args.cfg_options, launcher=args.launcher)
    model = cfg.get('model') or {}
    if not model.get('target_generator'):
        raise ValueError(f'{args.config} has no model.target_generator (the teacher) to extract with; '
                         f'give a SAMI pretraining config')
    init_distributed(args.launcher)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    image_size = args.image_size or (model.get('backbone') or {}).get('img_size', 224)
    teacher, preprocessor, dataset, preprocessor_cfg = build_parts(cfg, image_size)
    device = torch.device(args.device)
    teacher.to(device)
    preprocessor.to(device)
    image_root = os.path.abspath(dataset.data_prefix['img_path'])
    meta = dict(teacher=teacher.describe(), image_size=image_size, map_size=args.map_size,
                image_root=image_root, dtype='float16',
                normalization={k: preprocessor_cfg.get(k) for k in ('mean', 'std', 'to_rgb')})
    if rank == 0:
        ensure_meta(args.out, meta)
        for stale in incomplete_shards(args.out):
            os.remove(stale)
    if world > 1:
        dist.barrier()
    done = set(TeacherFeatureCache(args.out).keys())
    keys = {i: image_key(dataset.get_data_info(i)['img_path'], image_root) for i in range(len(dataset))}
    todo = [i for i in range(rank, len(dataset), world) if keys[i] not in done]
    if rank == 0:
        print(f'teacher-feature cache {args.out}: {len(done)} of {len(dataset)} images already '
              f'stored, {len(todo)} to do on rank 0 of {world}', flush=True)

    from mmengine.dataset import default_collate
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, todo),
                                         batch_size=args.batch_size, num_workers=args.num_workers,
                                         collate_fn=default_collate)
    start, stored, last_report = time.time(), 0, 0.0
    interactive = sys.stdout.isatty()
    with FeatureCacheWriter(args.out, meta, rank, args.records_per_shard) as writer:
        for batch in loader:
            data = preprocessor(batch, training=False)
            with torch.autocast(device.type, dtype=torch.float16,
                                enabled=args.amp and device.type == 'cuda'):
                maps = teacher(data['inputs'])
            if args.map_size:
                maps = resize_to_grid(maps, (args.map_size, args.map_size))
            for sample, features in zip(data['data_samples'], maps):
                writer.add(image_key(sample.img_path, image_root), features, sample.ori_shape[:2])
            stored += len(maps)
            now = time.time()
            if rank == 0 and (interactive or now - last_report >= 30 or stored == len(todo)):
                last_report = now
                rate = stored / max(now - start, 1e-9)
                eta = (len(todo) - stored) / max(rate, 1e-9)
                print(f'\r[rank 0] {stored}/{len(todo)} images, {rate:.1f} img/s, ETA {eta:.0f}s',
                      end='' if interactive else '\n', flush=True)
    if rank == 0 and interactive:
        print(flush=True)
    if world > 1:
        dist.barrier()
    if rank == 0:
        cache = TeacherFeatureCache(args.out)
        missing = len(dataset) - sum(key in cache for key in keys.values())
        print(f'teacher-feature cache {args.out}: {len(cache)} images stored, {missing} missing',
              flush=True)
        if args.verify:
            problems = cache.verify()
            print('verify: ' + ('all shards intact' if not problems else '\n'.join(problems)),
                  flush=True)
            if problems:
                sys.exit(1)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == '__main__':
    sys.exit(run_tool(main, extra_errors=CONFIG_ERRORS))
