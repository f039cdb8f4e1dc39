"""SqueezeSAM's whole-object augmentations as registered mmengine transforms, and the SA-1B / COCO
dataset that runs them (thin adapters over :mod:`efficientsam_plugins.training.augment`).

A training sample flows as ``dict(img=uint8 [3, H, W], gt_masks=bool [N, H, W], ...)`` (torch
tensors throughout, so the masks never round-trip through numpy):

    RandomObjectCrop -> ResizeToModelInput -> MergeWholeObjects -> InjectOutlierClicks -> PackPromptSample

and leaves as ``dict(inputs, data_samples)`` with ``gt_masks`` (targets), ``click_masks`` (where the
first click goes) and ``outlier_points`` / ``outlier_valid``, read by ``SqueezeSamTrainer``.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose
from mmengine.registry import DATASETS, TRANSFORMS

from ..training.augment import crop_masks, mask_box, merge_whole_objects, object_crop_box, sample_outlier_clicks
from .sa1b import SA1BDataset, _ImageEntry, random_masks, resize_image, resize_masks


def _require(results: dict, *keys: str, step: str) -> None:
    missing = [k for k in keys if k not in results]
    if missing:
        raise KeyError(f'{step} needs {missing} in the sample: check the pipeline order '
                       f'(RandomObjectCrop, ResizeToModelInput, MergeWholeObjects, InjectOutlierClicks, '
                       f'PackPromptSample)')


@TRANSFORMS.register_module()
class RandomObjectCrop(BaseTransform):
    """With ``probability``, crops a window around one random object (:func:`object_crop_box`:
    side = the object's longer side x U(``context``), random offset keeping the object inside) and
    keeps the masks that remain (``min_visible``: the fraction of a mask's area that must stay).
    Records ``crop_box`` (x1, y1, x2, y2) in the loaded image's pixels and ``crop_object``, the
    chosen mask's new index."""

    def __init__(self, context: Tuple[float, float] = (1.5, 4.0), probability: float = 1.0,
                 min_visible: float = 0.0) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f'probability must be in [0, 1], got {probability}')
        self.context, self.probability, self.min_visible = tuple(context), probability, min_visible

    def transform(self, results: dict) -> dict:
        _require(results, 'img', 'gt_masks', step='RandomObjectCrop')
        masks = results['gt_masks']
        height, width = masks.shape[-2:]
        results['crop_box'] = (0, 0, width, height)
        if len(masks) == 0 or float(torch.rand(())) >= self.probability:
            return results
        chosen = int(torch.randint(len(masks), ()))
        box = object_crop_box(mask_box(masks[chosen]), (height, width), self.context)
        masks, keep = crop_masks(masks, box, self.min_visible)
        x1, y1, x2, y2 = box
        results.update(img=results['img'][:, y1:y2, x1:x2], gt_masks=masks, crop_box=box,
                       img_shape=(y2 - y1, x2 - x1), crop_object=int((keep == chosen).nonzero()[0, 0]))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(context={self.context}, probability={self.probability})'


@TRANSFORMS.register_module()
class ResizeToModelInput(BaseTransform):
    """The image to ``img_size`` squared (bilinear, aspect ratio not kept, as the model's own
    resize) and the masks to ``mask_size`` (area, covered fraction >= 0.5; vanished masks dropped),
    as :class:`~efficientsam_plugins.openmmlab.sa1b.SA1BDataset` does without augmentations."""

    def __init__(self, img_size: int, mask_size: int) -> None:
        if img_size % mask_size:
            raise ValueError(f'img_size {img_size} must be a multiple of mask_size {mask_size}')
        self.img_size, self.mask_size = img_size, mask_size

    def transform(self, results: dict) -> dict:
        _require(results, 'img', 'gt_masks', step='ResizeToModelInput')
        masks = results['gt_masks']
        if len(masks):
            masks = resize_masks(masks, self.mask_size)
            keep = masks.flatten(1).any(1)
            masks = masks[keep]
            if 'crop_object' in results:
                kept = keep.nonzero()[:, 0]
                position = (kept == results['crop_object']).nonzero()
                results['crop_object'] = int(position[0, 0]) if len(position) else None
        else:
            masks = masks.new_zeros((0, self.mask_size, self.mask_size))
        results.update(img=resize_image(results['img'], self.img_size), gt_masks=masks,
                       img_shape=(self.img_size, self.img_size))
        return results


@TRANSFORMS.register_module()
class MergeWholeObjects(BaseTransform):
    """:func:`merge_whole_objects`: ``gt_masks`` become the (possibly merged) targets, the original
    masks go to ``click_masks``. The options are those of the function."""

    def __init__(self, probability: float = 0.5, merge_parts: bool = True, merge_touching: bool = True,
                 neighbour_probability: float = 1.0, touch_distance: int = 1, containment: float = 0.8) -> None:
        self.options = dict(probability=probability, merge_parts=merge_parts, merge_touching=merge_touching,
                            neighbour_probability=neighbour_probability, touch_distance=touch_distance,
                            containment=containment)
        merge_whole_objects(torch.zeros(0, 1, 1, dtype=torch.bool), **self.options)  # checks the options now

    def transform(self, results: dict) -> dict:
        _require(results, 'gt_masks', step='MergeWholeObjects')
        results['gt_masks'], results['click_masks'] = merge_whole_objects(results['gt_masks'], **self.options)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.options})'


@TRANSFORMS.register_module()
class InjectOutlierClicks(BaseTransform):
    """:func:`sample_outlier_clicks` on the targets, in model-input pixels (after
    :class:`ResizeToModelInput`): ``outlier_points`` ``[N, max_clicks, 2]`` and ``outlier_valid``."""

    def __init__(self, max_clicks: int = 2, probability: float = 0.5, margin: int = 0) -> None:
        self.max_clicks, self.probability, self.margin = max_clicks, probability, margin
        sample_outlier_clicks(torch.zeros(0, 1, 1, dtype=torch.bool), max_clicks, probability, margin)

    def transform(self, results: dict) -> dict:
        _require(results, 'img', 'gt_masks', step='InjectOutlierClicks')
        targets = results['gt_masks']
        scale = results['img'].shape[-1] // targets.shape[-1]
        results['outlier_points'], results['outlier_valid'] = sample_outlier_clicks(
            targets, self.max_clicks, self.probability, self.margin, scale)
        return results


@TRANSFORMS.register_module()
class PackPromptSample(BaseTransform):
    """Up to ``max_queries`` random queries (all masks still shaped the targets before this) into
    ``dict(inputs=uint8 [3, S, S], data_samples=dict(gt_masks, click_masks, outlier_points,
    outlier_valid, image_id, img_path, ori_shape, crop_box))``; None when no query is left."""

    QUERY_KEYS = ('gt_masks', 'click_masks', 'outlier_points', 'outlier_valid')

    def __init__(self, max_queries: int = 16) -> None:
        if max_queries < 1:
            raise ValueError(f'max_queries must be >= 1, got {max_queries}')
        self.max_queries = max_queries

    def transform(self, results: dict) -> Optional[dict]:
        _require(results, 'img', 'gt_masks', step='PackPromptSample')
        n = len(results['gt_masks'])
        if n == 0:
            return None
        chosen = torch.randperm(n)[:self.max_queries]
        sample = {k: results[k][chosen] for k in self.QUERY_KEYS if k in results}
        sample.update({k: results[k] for k in ('image_id', 'img_path', 'ori_shape', 'crop_box') if k in results})
        return dict(inputs=results['img'], data_samples=sample)


@DATASETS.register_module()
class SqueezeSamSA1BDataset(SA1BDataset):
    """:class:`SA1BDataset` whose training samples run ``pipeline`` (the transforms above).

    Each image and up to ``max_loaded_masks`` of its masks (None: all, so that merging sees every
    neighbour) are loaded at ``load_size`` (the longer side; None: the file's size, never enlarged)
    before the pipeline crops and resizes them; ``img_size=None`` gives evaluation samples as the
    parent does.
    """

    def __init__(self, pipeline: Sequence[dict] = (), load_size: Optional[int] = None,
                 max_loaded_masks: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = Compose(list(pipeline))
        self.load_size, self.max_loaded_masks = load_size, max_loaded_masks

    def _training_sample(self, entry: _ImageEntry) -> Optional[Dict[str, Any]]:
        image, anns, decode, fields = self._load(entry)
        height, width = image.shape[-2:]
        scale = min(1.0, self.load_size / max(height, width)) if self.load_size else 1.0
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        masks = random_masks(anns, decode, size, self.max_loaded_masks)
        if not masks:
            return None
        if size != (height, width):
            image = resize_image(image, size)
        return self.pipeline(dict(fields, img=image, gt_masks=torch.stack(masks), img_shape=size))
