"""Runs a SAMI config's teacher once over its training images into the teacher-feature cache
(``tools/extract_teacher_features.py`` is its command line).

Each whole image, resized to ``image_size`` and normalised as the config says, goes through
``model.target_generator``; its fp16 map (optionally resampled to a ``map_size`` grid) is what
``LoadSAMITeacherTarget`` later cuts each augmented view's targets from. A rerun skips images
already stored and recomputes shards left incomplete by an interruption.
"""
import copy
import os
from typing import List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from tqdm import tqdm

from ..models.sami import (FeatureCacheWriter, TeacherFeatureCache, ensure_meta, image_key, incomplete_shards,
                           resize_to_grid)


@torch.no_grad()
def extract_teacher_features(cfg: Config, out: str, image_size: Optional[int] = None,
                             map_size: Optional[int] = None, batch_size: int = 16, num_workers: int = 4,
                             records_per_shard: int = 256, device: str = 'cpu', amp: bool = False,
                             verify: bool = False) -> List[str]:
    """Fills (or resumes) the cache at ``out`` on every rank of ``cfg.launcher``; returns the
    problems ``verify`` found on rank 0 by re-hashing every shard. ``image_size`` defaults to the
    student's ``img_size``; ``amp`` runs the teacher in fp16 autocast (CUDA only)."""
    from mmengine.dataset import default_collate
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings

    from .launch import init_distributed
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f'the cache path {out} is a file; give a folder')
    model = cfg.get('model') or {}
    if not model.get('target_generator'):
        raise ValueError(f'{cfg.filename} has no model.target_generator (the teacher) to extract with; '
                         f'give a SAMI pretraining config')
    preprocessor_cfg = copy.deepcopy(model.get('data_preprocessor') or cfg.get('data_preprocessor'))
    if preprocessor_cfg is None:
        raise ValueError('the config has no data_preprocessor (the normalisation of the images)')
    if not (cfg.get('train_dataloader') or {}).get('dataset'):
        raise ValueError('the config has no train_dataloader.dataset (the images to extract from)')
    init_distributed(cfg.get('launcher', 'none'))
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    image_size = image_size or (model.get('backbone') or {}).get('img_size', 224)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    device = torch.device(device)
    teacher = MODELS.build(model.target_generator).to(device)
    preprocessor_cfg.setdefault('type', 'SelfSupDataPreprocessor')
    preprocessor = MODELS.build(preprocessor_cfg).to(device)
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(image_size, image_size), keep_ratio=False, backend='pillow',
             interpolation='bicubic'),
        dict(type='PackInputs', meta_keys=('img_path', 'ori_shape')),
    ]
    dataset = DATASETS.build(dataset_cfg)
    image_root = os.path.abspath(dataset.data_prefix['img_path'])
    meta = dict(teacher=teacher.describe(), image_size=image_size, map_size=map_size,
                image_root=image_root, dtype='float16',
                normalization={k: preprocessor_cfg.get(k) for k in ('mean', 'std', 'to_rgb')})
    if rank == 0:
        ensure_meta(out, meta)
        for stale in incomplete_shards(out):
            os.remove(stale)
    if world > 1:
        dist.barrier()
    done = set(TeacherFeatureCache(out).keys())
    keys = [image_key(dataset.get_data_info(i)['img_path'], image_root) for i in range(len(dataset))]
    todo = [i for i in range(rank, len(dataset), world) if keys[i] not in done]
    if rank == 0:
        print(f'teacher-feature cache {out}: {len(done)} of {len(dataset)} images already '
              f'stored, {len(todo)} to do on rank 0 of {world}', flush=True)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, todo), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=default_collate)
    with FeatureCacheWriter(out, meta, rank, records_per_shard) as writer, \
            tqdm(total=len(todo), unit='image', disable=rank != 0 or not todo) as bar:
        for batch in loader:
            data = preprocessor(batch, training=False)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == 'cuda'):
                maps = teacher(data['inputs'])
            if map_size:
                maps = resize_to_grid(maps, (map_size, map_size))
            for sample, features in zip(data['data_samples'], maps):
                writer.add(image_key(sample.img_path, image_root), features)
            bar.update(len(maps))
    if world > 1:
        dist.barrier()
    problems = []
    if rank == 0:
        cache = TeacherFeatureCache(out)
        missing = sum(key not in cache for key in keys)
        print(f'teacher-feature cache {out}: {len(cache)} images stored, {missing} missing', flush=True)
        if verify:
            problems = cache.verify()
            print('verify: ' + ('\n'.join(problems) or 'all shards intact'), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()
    return problems
