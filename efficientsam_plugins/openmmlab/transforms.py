"""Pipeline steps for SAMI: a random-resized crop that records its view, and cached targets."""
import os
from typing import Optional

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import TRANSFORMS

from ..training.feature_cache import TeacherFeatureCache, image_key
from ..training.views import FULL_BOX, compose_boxes, crop_to_views

VIEW_BOX_KEY = 'sami_view_box'
TARGET_KEY = 'sami_target'


@TRANSFORMS.register_module()
class SAMIRandomResizedCrop(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop`` that also records the crop, composed with any earlier
    one, as ``results['sami_view_box']`` (normalised ``(x1, y1, x2, y2)``), to which
    ``LoadSAMITeacherTarget`` cuts the cached whole-image teacher map. Flips must come after it."""

    def transform(self, results: dict) -> dict:
        if results.get('flip', False):
            raise ValueError('SAMIRandomResizedCrop must come before RandomFlip: the view box of a '
                             'flipped image would be mirrored')
        img = results['img']
        height, width = img.shape[:2]
        top, left, crop_h, crop_w = self.rand_crop_params(img)
        img = mmcv.imcrop(img, bboxes=np.array([left, top, left + crop_w - 1, top + crop_h - 1]))
        results['img'] = mmcv.imresize(img, tuple(self.scale[::-1]),
                                       interpolation=self.interpolation, backend=self.backend)
        results['img_shape'] = results['img'].shape
        box = (left / width, top / height, (left + crop_w) / width, (top + crop_h) / height)
        results[VIEW_BOX_KEY] = compose_boxes(results.get(VIEW_BOX_KEY, FULL_BOX), box)
        return results


@TRANSFORMS.register_module()
class LoadSAMITeacherTarget(BaseTransform):
    """Cached teacher targets for the current view, as ``results['sami_target']`` (fp16 ``[C, h, w]``).

    The cache holds one teacher map per whole image (``tools/extract_teacher_features.py``). The
    view's target is that map cut to the view box recorded by ``SAMIRandomResizedCrop`` (the whole
    image if there is none) with RoIAlign, sampled at the centres of the view's ``patch_size``
    tokens, and mirrored if ``RandomFlip`` flipped the view. Place it after the crop and the flip;
    other geometric transforms after the crop are not supported. ``image_root`` (the folder the
    cache keys are relative to) defaults to the one recorded at extraction.
    """

    def __init__(self, cache_root: str, patch_size: int = 16, image_root: Optional[str] = None) -> None:
        self.cache_root, self.patch_size = cache_root, patch_size
        self._cache = TeacherFeatureCache(cache_root).check()  # damaged shards named before training starts
        self.image_root = image_root or self._cache.meta['image_root']
        if not os.path.isdir(self.image_root):
            raise FileNotFoundError(f'image root {self.image_root} of the cache {cache_root} does not '
                                    f'exist; pass image_root=... to LoadSAMITeacherTarget')

    def transform(self, results: dict) -> dict:
        flipped = bool(results.get('flip', False))
        if flipped and (results.get('flip_direction') or 'horizontal') != 'horizontal':
            raise ValueError(f'cached targets support horizontal flips only, got {results["flip_direction"]!r}')
        height, width = results['img_shape'][:2]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'view {height}x{width} is not divisible by patch_size {self.patch_size}')
        maps = self._cache.get(image_key(results['img_path'], self.image_root))
        target = crop_to_views(maps[None], [results.get(VIEW_BOX_KEY, FULL_BOX)], [flipped],
                               (height // self.patch_size, width // self.patch_size))[0]
        results[TARGET_KEY] = target.to(torch.float16)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(cache_root={self.cache_root!r}, '
                f'patch_size={self.patch_size}, image_root={self.image_root!r})')
