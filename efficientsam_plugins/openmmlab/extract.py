"""Runs a SAMI config's teacher once over its training images into the teacher-feature cache
(``tools/extract_teacher_features.py`` is its command line).

Each whole image, resized to ``image_size`` and normalised as the config says, goes through
``model.target_generator``; its fp16 map (optionally pooled to a ``map_size`` grid) is what
``LoadSAMITeacherTarget`` later cuts each augmented view's targets from. The map must be fine
enough that the smallest random-resized crop still spans at least one cached cell per student
token, so ``image_size`` defaults to the teacher's native input size (SAM: 1024, a 64x64 map)
rather than the student's 224 (a 14x14 map, of which a 20%-area crop keeps only ~6x6 cells). The
tool prints the map size, its disk cost and that crop coverage before it starts. A rerun skips
images already stored and recomputes shards left incomplete by an interruption.
"""
import copy
import math
import os
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import barrier, get_dist_info
from tqdm import tqdm

from ..training.feature_cache import FeatureCacheWriter, TeacherFeatureCache, image_key
from ..training.views import resize_to_grid

IMAGENET_1K_TRAIN_IMAGES = 1_281_167
RANDOM_RESIZED_CROPS = ('SAMIRandomResizedCrop', 'RandomResizedCrop')


def _size_text(nbytes: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if nbytes < 1024:
            return f'{nbytes:.1f} {unit}' if unit != 'B' else f'{nbytes:.0f} B'
        nbytes /= 1024
    return f'{nbytes:.2f} TiB'


def smallest_crop(pipeline) -> Optional[Tuple[float, float]]:
    """The smallest area fraction of the training pipeline's random-resized crop and the fraction
    of the image side its short edge then spans (at the most elongated aspect ratio), if it has one."""
    for step in pipeline or ():
        if step.get('type') in RANDOM_RESIZED_CROPS:
            area = float(step.get('crop_ratio_range', (0.08, 1.0))[0])
            low, high = step.get('aspect_ratio_range', (3 / 4, 4 / 3))
            return area, math.sqrt(area * min(low, 1 / high))
    return None


def cache_plan(channels: int, map_hw: Tuple[int, int], num_images: int, student_grid: int,
               crop: Optional[Tuple[float, float]]) -> List[str]:
    """What a cache of ``channels x map_hw`` fp16 maps costs on disk and how many cached cells the
    smallest crop (``(area, short side)`` fractions, see :func:`smallest_crop`) keeps per student
    token, as lines to print before extracting."""
    per_image = channels * map_hw[0] * map_hw[1] * 2
    lines = [f'cached maps: {channels} x {map_hw[0]} x {map_hw[1]} fp16 = {_size_text(per_image)} per image; '
             f'{num_images} images here: {_size_text(per_image * num_images)}; ImageNet-1K train '
             f'({IMAGENET_1K_TRAIN_IMAGES:,} images): {_size_text(per_image * IMAGENET_1K_TRAIN_IMAGES)}']
    if crop is not None:
        area, side = crop
        cells = min(map_hw) * side
        verdict = ('sharp: each target pools at least one cached cell' if cells >= student_grid else
                   'BLURRY: those targets are upsampled from fewer cells than tokens; raise --image-size or --map-size')
        lines.append(f'the smallest training crop ({area:.0%} of the image, most elongated) spans ~{cells:.1f} '
                     f'cached cells across its short side for the student\'s {student_grid} tokens: {verdict}')
    return lines


@torch.no_grad()
def extract_teacher_features(cfg: Config, out: str, image_size: Optional[int] = None,
                             map_size: Optional[int] = None, batch_size: int = 16, num_workers: int = 4,
                             records_per_shard: int = 256, device: str = 'cpu', amp: bool = False,
                             verify: bool = False) -> List[str]:
    """Fills (or resumes) the cache at ``out`` on every rank of ``cfg.launcher``; returns the
    problems ``verify`` found on rank 0 by re-hashing every shard. ``image_size`` defaults to the
    teacher's fixed ``resolution``, else its native input size (see the module docstring);
    ``map_size`` pools the stored maps to a smaller grid (less disk, fewer cells per crop); ``amp``
    runs the teacher in fp16 autocast (CUDA only)."""
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
    rank, world = get_dist_info()
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    device = torch.device(device)
    teacher = MODELS.build(model.target_generator).to(device)
    image_size = image_size or (teacher.native_size if teacher.resolution == 'student' else teacher.resolution)
    teacher_grid = teacher.input_size(image_size) // teacher.patch_size
    if map_size and map_size > teacher_grid:
        raise ValueError(f'map_size {map_size} exceeds the teacher\'s {teacher_grid} x {teacher_grid} map at '
                         f'image size {image_size}: it would only upsample; raise the image size instead')
    map_hw = (map_size or teacher_grid,) * 2
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
    meta = dict(teacher=teacher.describe(), image_size=image_size, map_size=list(map_hw),
                image_root=image_root, dtype='float16',
                normalization={k: preprocessor_cfg.get(k) for k in ('mean', 'std', 'to_rgb')})
    if rank == 0:
        TeacherFeatureCache(out, meta)  # created, or checked and cleared of interrupted writes
    barrier()
    done = set(TeacherFeatureCache(out).keys())
    keys = [image_key(dataset.get_data_info(i)['img_path'], image_root) for i in range(len(dataset))]
    todo = [i for i in range(rank, len(dataset), world) if keys[i] not in done]
    if rank == 0:
        backbone = model.get('backbone') or {}
        student_grid = backbone.get('img_size', 224) // backbone.get('patch_size', 16)
        print(f'teacher-feature cache {out}: whole images at {image_size} x {image_size}, teacher input '
              f'{teacher.input_size(image_size)} x {teacher.input_size(image_size)}', flush=True)
        for line in cache_plan(teacher.out_channels, map_hw, len(dataset), student_grid,
                               smallest_crop(cfg.train_dataloader.dataset.get('pipeline'))):
            print(line, flush=True)
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
            maps = resize_to_grid(maps, map_hw)
            for sample, features in zip(data['data_samples'], maps):
                writer.add(image_key(sample.img_path, image_root), features)
            bar.update(len(maps))
    barrier()
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
