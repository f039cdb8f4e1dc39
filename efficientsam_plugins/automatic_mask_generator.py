"""Segment everything with bounded memory: SAM's automatic mask generator on any :class:`Predictor`.

Same parameters, defaults and records as ``segment_anything.SamAutomaticMaskGenerator``, so code
written for it ports over; what differs is where the memory goes. SAM upsamples all 3 candidates of
every point of a batch to full resolution before filtering (64 points x 3 masks x 1920 x 1080 float
logits = 1.6 GB per batch); here the predicted-IoU and stability filters run on the low-resolution
logits, only the survivors are upsampled, a few at a time, and each survivor is stored as a
run-length code (RLE). Past ``RLE_BUDGET_BYTES`` of RLE only its box and scores are kept and, after
NMS, the few masks that survive are decoded again, so peak memory is the decoder's batch plus a
bounded store, whatever the grid.

Two optional ways to decode fewer prompts than the plain grid:

* coarse to fine (``coarse_points_per_side``, TinySAM's hierarchical mode): decode a coarse grid
  first, then only the points of the full grid outside its confident masks (kept, with predicted
  IoU >= ``coarse_iou_thresh``);
* box prompts (``generate(image, boxes=...)``, MobileSAMv2-style): one query per box from any
  detector instead of the grid.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torchvision.ops import nms
from tqdm import tqdm

from .mask_generation import (
    box_near_crop_edge,
    coco_rle,
    crop_boxes,
    layer_point_grids,
    masks_to_boxes,
    masks_to_rle,
    pad_to_image,
    remove_small_regions,
    rle_area,
    rle_for_json,
    rle_to_mask,
    stability_score,
)
from .modeling.common import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_POINT
from .modeling.efficient_sam import EfficientSam
from .predictor import ArrayLike, EfficientSamPredictor, Predictor, as_prompt_tensor, image_to_tensor

OUTPUT_MODES = ('binary_mask', 'uncompressed_rle', 'coco_rle')
# Full-resolution logits upsampled at once: 2**24 floats (64 MiB), i.e. 8 masks of 1920x1080.
UPSAMPLE_PIXELS = 2 ** 24
# RLE kept between batches before survivors keep only their box (their masks are decoded again if
# they survive NMS): 256 MiB, some thousands of real masks at 1920x1080.
RLE_BUDGET_BYTES = 2 ** 28


@dataclass
class _Proposals:
    """Masks kept so far, one row each; boxes and points in image coordinates."""
    rles: List[Optional[Dict[str, Any]]]  # None: over the RLE budget, decoded again if kept
    boxes: torch.Tensor  # [N, 4] XYXY, inclusive max
    iou: torch.Tensor  # [N]
    stability: torch.Tensor  # [N]
    points: torch.Tensor  # [N, P, 2]: the prompt (one point, or a box's two corners)
    crop_boxes: torch.Tensor  # [N, 4] XYXY
    candidates: torch.Tensor  # [N]: which of the prompt's candidate masks

    @classmethod
    def empty(cls, points_per_prompt: int) -> '_Proposals':
        return cls([], torch.zeros(0, 4, dtype=torch.int64), torch.zeros(0), torch.zeros(0),
                   torch.zeros(0, points_per_prompt, 2), torch.zeros(0, 4, dtype=torch.int64),
                   torch.zeros(0, dtype=torch.int64))

    @classmethod
    def cat(cls, parts: Sequence['_Proposals']) -> '_Proposals':
        return cls([rle for part in parts for rle in part.rles],
                   *(torch.cat([getattr(part, name) for part in parts])
                     for name in ('boxes', 'iou', 'stability', 'points', 'crop_boxes', 'candidates')))

    def select(self, index: torch.Tensor) -> '_Proposals':
        return _Proposals([self.rles[i] for i in index.tolist()], self.boxes[index], self.iou[index],
                          self.stability[index], self.points[index], self.crop_boxes[index],
                          self.candidates[index])

    @property
    def rle_bytes(self) -> int:
        return sum(rle['counts'].nbytes for rle in self.rles if rle is not None)


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f'{name} must be a number in [0, 1], got {value!r}')


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')


class AutomaticMaskGenerator:
    """Masks for everything in an image from a grid of point prompts, with SAM's parameters.

    Each record of :meth:`generate` has SAM's fields: ``segmentation`` (per ``output_mode``),
    ``area``, ``bbox`` (XYWH, SAM's convention w = x_max - x_min), ``predicted_iou``,
    ``point_coords``, ``stability_score`` and ``crop_box`` (XYWH).

    Args:
        model_or_predictor: an :class:`~efficientsam_plugins.modeling.efficient_sam.EfficientSam`
            model (wrapped in an :class:`~efficientsam_plugins.predictor.EfficientSamPredictor`) or any
            :class:`~efficientsam_plugins.predictor.Predictor` (EfficientSAM, SqueezeSAM, ONNX).
        points_per_side: the grid is ``points_per_side x points_per_side`` points over the image (and
            each crop); exactly one of it and ``point_grids`` is given.
        points_per_batch: points decoded in one predictor call; more is faster and needs more memory.
        pred_iou_thresh: keep masks whose predicted IoU is at least this, in [0, 1].
        stability_score_thresh: keep masks whose stability score (the IoU of the mask thresholded at
            ``mask_threshold - offset`` and at ``+ offset``) is at least this, in [0, 1].
        stability_score_offset: the logit offset of the stability score.
        box_nms_thresh: the box IoU above which non-maximum suppression drops the lower-scoring of
            two masks of one crop, in [0, 1].
        crop_n_layers: layers of image crops that are segmented again (layer ``i`` cuts the image
            into ``2**i x 2**i`` overlapping crops); 0: the whole image only.
        crop_nms_thresh: the box IoU of the non-maximum suppression between masks of different crops.
        crop_overlap_ratio: the overlap of neighbouring crops, as a fraction of the image side in the
            first crop layer (scaled down in the following ones).
        crop_n_points_downscale_factor: layer ``i`` samples ``points_per_side / factor**i`` points
            per side.
        point_grids: explicit grids instead of ``points_per_side``: one ``[N, 2]`` array of (x, y) in
            [0, 1] per crop layer.
        min_mask_region_area: remove disconnected regions and fill holes smaller than this many
            pixels (OpenCV); 0 keeps masks as decoded.
        output_mode: ``'binary_mask'`` (bool ``HxW`` arrays), ``'uncompressed_rle'`` or
            ``'coco_rle'`` (pycocotools' compressed RLE, for JSON).
        coarse_points_per_side: not in SAM: decode a grid this coarse first, then only the points of
            the ``points_per_side`` grid outside its confident masks (TinySAM's hierarchical mode).
        coarse_iou_thresh: not in SAM: the predicted IoU from which a coarse mask counts as confident.

    Raises:
        TypeError: ``model_or_predictor`` is neither a model nor a predictor.
        ValueError: for a value out of range, or both or neither of ``points_per_side`` and
            ``point_grids``.
        ImportError: for ``output_mode='coco_rle'`` without pycocotools or ``min_mask_region_area``
            without OpenCV, at once rather than after the whole image is segmented.
    """

    def __init__(self, model_or_predictor, points_per_side: Optional[int] = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: Optional[List[np.ndarray]] = None,
                 min_mask_region_area: int = 0, output_mode: str = 'binary_mask',
                 coarse_points_per_side: Optional[int] = None, coarse_iou_thresh: float = 0.95) -> None:
        if isinstance(model_or_predictor, EfficientSam):
            model_or_predictor = EfficientSamPredictor(model_or_predictor)
        if not isinstance(model_or_predictor, Predictor):
            raise TypeError(f'model_or_predictor must be an EfficientSam model or a Predictor, got '
                            f'{type(model_or_predictor).__name__}')
        if (points_per_side is None) == (point_grids is None):
            raise ValueError('give exactly one of points_per_side and point_grids')
        _check_count('points_per_batch', points_per_batch, 1)
        _check_count('crop_n_layers', crop_n_layers, 0)
        _check_count('crop_n_points_downscale_factor', crop_n_points_downscale_factor, 1)
        _check_count('min_mask_region_area', min_mask_region_area, 0)
        for name in ('pred_iou_thresh', 'stability_score_thresh', 'box_nms_thresh', 'crop_nms_thresh',
                     'crop_overlap_ratio', 'coarse_iou_thresh'):
            _check_fraction(name, locals()[name])
        if isinstance(stability_score_offset, bool) or not isinstance(stability_score_offset, (int, float)):
            raise ValueError(f'stability_score_offset must be a number, got {stability_score_offset!r}')
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f'output_mode must be one of {list(OUTPUT_MODES)}, got {output_mode!r}')
        if points_per_side is not None:
            _check_count('points_per_side', points_per_side, 1)
            point_grids = layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        else:
            point_grids = [np.asarray(grid, dtype=np.float64) for grid in point_grids]
            if len(point_grids) != crop_n_layers + 1:
                raise ValueError(f'point_grids needs one grid per crop layer ({crop_n_layers + 1}), '
                                 f'got {len(point_grids)}')
            for grid in point_grids:
                if grid.ndim != 2 or grid.shape[1] != 2 or not ((grid >= 0) & (grid <= 1)).all():
                    raise ValueError(f'each point grid must be [N, 2] (x, y) in [0, 1], got shape {grid.shape}')
        self.coarse_grids = None
        if coarse_points_per_side is not None:
            if points_per_side is None:
                raise ValueError('coarse_points_per_side refines the points_per_side grid; it cannot '
                                 'be combined with point_grids')
            _check_count('coarse_points_per_side', coarse_points_per_side, 1)
            if coarse_points_per_side >= points_per_side:
                raise ValueError(f'coarse_points_per_side ({coarse_points_per_side}) must be smaller '
                                 f'than points_per_side ({points_per_side})')
            self.coarse_grids = layer_point_grids(coarse_points_per_side, crop_n_layers,
                                                  crop_n_points_downscale_factor)
        if output_mode == 'coco_rle':  # fail now, not after the whole image is segmented
            coco_rle({'size': [1, 1], 'counts': [1]})
        if min_mask_region_area > 0:
            remove_small_regions(np.zeros((1, 1), bool), 1, 'holes')
        self.predictor = model_or_predictor
        self.point_grids = point_grids
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.coarse_iou_thresh = coarse_iou_thresh

    @torch.no_grad()
    def generate(self, image, boxes: Optional[ArrayLike] = None, progress: bool = False) -> List[Dict[str, Any]]:
        """The masks of everything in ``image``.

        Args:
            image: anything :meth:`~efficientsam_plugins.predictor.Predictor.set_image` takes (uint8
                ``HxWx3`` RGB, a PIL image, a tensor).
            boxes: ``[B, 4]`` boxes (x1, y1, x2, y2 pixels, e.g. a detector's) instead of the point
                grid: one single-mask query per box, on the whole image (no crops, no coarse grid).
            progress: show a tqdm bar of the prompts decoded.

        Returns:
            One record (a dict with SAM's fields, see the class) per mask, best first within each crop.

        Raises:
            ValueError: for an empty image, malformed boxes, or boxes with crops or a coarse grid.
        """
        pixels = image_to_tensor(image)
        height, width = pixels.shape[1:]
        if 0 in pixels.shape:
            raise ValueError(f'image is empty: shape {tuple(pixels.shape)}')
        if boxes is not None:
            if self.crop_n_layers or self.coarse_grids is not None:
                raise ValueError('box prompts run on the whole image: use crop_n_layers=0 and no '
                                 'coarse_points_per_side with boxes')
            boxes = as_prompt_tensor(boxes, 'boxes')
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f'boxes must be [B, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}')
        crops, layers = crop_boxes((height, width), self.crop_n_layers, self.crop_overlap_ratio)
        total = len(boxes) if boxes is not None else sum(
            len(self.point_grids[layer]) + (len(self.coarse_grids[layer]) if self.coarse_grids else 0)
            for layer in layers)
        per_crop = []
        self._rle_bytes = 0  # RLE held by the survivors so far
        with tqdm(total=total, unit='prompt', disable=not progress, desc='segment everything') as bar:
            for crop, layer in zip(crops, layers):
                per_crop.append(self._process_crop(pixels, crop, layer, boxes, bar))
                self._rle_bytes = sum(part.rle_bytes for part in per_crop)
        found = _Proposals.cat(per_crop)
        if len(crops) > 1 and len(found.rles):  # overlapping crops: the smaller crop's mask wins
            crops_xyxy = found.crop_boxes.float()
            crop_area = (crops_xyxy[:, 2] - crops_xyxy[:, 0]) * (crops_xyxy[:, 3] - crops_xyxy[:, 1])
            found = found.select(nms(found.boxes.float(), 1 / crop_area, self.crop_nms_thresh))
        if self.min_mask_region_area > 0 and len(found.rles):
            found = self._remove_small_regions(found)
        return self._records(found)

    def _process_crop(self, pixels: torch.Tensor, crop_box: List[int], layer: int,
                      boxes: Optional[torch.Tensor], bar) -> _Proposals:
        """The masks of one crop after box NMS, in image coordinates."""
        x0, y0, x1, y1 = crop_box
        predictor = self.predictor
        predictor.set_image(pixels[:, y0:y1, x0:x1])
        size = torch.tensor([x1 - x0, y1 - y0], dtype=torch.float64)
        try:
            if boxes is not None:
                prompts, labels = predictor.prepare_prompts(None, None, boxes)
                found = self._decode_prompts(prompts, labels, crop_box, pixels.shape[1:], False, bar)[0]
            elif self.coarse_grids is None:
                prompts, labels = predictor.prepare_prompts(torch.from_numpy(self.point_grids[layer])[:, None] * size,
                                                     None, None)
                found = self._decode_prompts(prompts, labels, crop_box, pixels.shape[1:], True, bar)[0]
            else:
                found = self._coarse_to_fine(layer, size, crop_box, pixels.shape[1:], bar)
            found = found.select(nms(found.boxes.float(), found.iou, self.box_nms_thresh))
            self._decode_missing_masks(found, crop_box, pixels.shape[1:])
        finally:
            predictor.reset_image()
        offset = torch.tensor([x0, y0])
        found.boxes = found.boxes + offset.repeat(2)
        found.points = found.points + offset
        return found

    def _coarse_to_fine(self, layer: int, size: torch.Tensor, crop_box: List[int], image_size, bar) -> _Proposals:
        """Decodes the coarse grid, then the points of the fine grid that none of its confident
        masks covers."""
        fine = torch.from_numpy(self.point_grids[layer]) * size
        coarse, labels = self.predictor.prepare_prompts(torch.from_numpy(self.coarse_grids[layer])[:, None] * size,
                                                 None, None)
        first, covered = self._decode_prompts(coarse, labels, crop_box, image_size, True, bar, coverage_points=fine)
        bar.total -= int(covered.sum())
        bar.refresh()
        if covered.all():
            return first
        rest, labels = self.predictor.prepare_prompts(fine[~covered][:, None], None, None)
        second, _ = self._decode_prompts(rest, labels, crop_box, image_size, True, bar)
        return _Proposals.cat([first, second])


    def _decode_prompts(self, prompts: torch.Tensor, labels: torch.Tensor, crop_box: List[int], image_size,
                        multimask_output: bool, bar, coverage_points: Optional[torch.Tensor] = None):
        """Kept masks of validated prompts ``[Q, P, 2]`` (crop pixels), decoded ``points_per_batch`` at
        a time, and which ``coverage_points`` ``[K, 2]`` (crop pixels) a kept mask with predicted IoU
        >= ``coarse_iou_thresh`` covers."""
        predictor = self.predictor
        crop_h, crop_w = predictor.original_size
        covered = torch.zeros(0 if coverage_points is None else len(coverage_points), dtype=torch.bool)
        if coverage_points is not None:  # the pixel each point falls in
            columns = coverage_points[:, 0].long().clamp(0, crop_w - 1).to(predictor.device)
            rows = coverage_points[:, 1].long().clamp(0, crop_h - 1).to(predictor.device)
        image_box = [0, 0, image_size[1], image_size[0]]
        chunk = max(1, UPSAMPLE_PIXELS // (crop_h * crop_w))
        parts = [_Proposals.empty(prompts.shape[1])]
        for start in range(0, len(prompts), self.points_per_batch):
            batch = slice(start, start + self.points_per_batch)
            low_res, iou = self.predictor.decode_low_res(prompts[batch], labels[batch], multimask_output)
            candidates = low_res.shape[1]
            low_res, iou = low_res.flatten(0, 1), iou.flatten(0, 1).float()
            index = torch.arange(len(low_res), device=low_res.device)
            keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
            low_res, iou, index = low_res[keep], iou[keep], index[keep]
            stability = stability_score(low_res, predictor.mask_threshold, self.stability_score_offset)
            if self.stability_score_thresh > 0:
                keep = stability >= self.stability_score_thresh
                low_res, iou, index, stability = low_res[keep], iou[keep], index[keep], stability[keep]
            source, candidate = (index // candidates + start).cpu(), (index % candidates).cpu()
            for first in range(0, len(low_res), chunk):
                part = slice(first, first + chunk)
                masks = predictor.upsample(low_res[None, part])[0] > predictor.mask_threshold
                mask_boxes = masks_to_boxes(masks)
                inside = ~box_near_crop_edge(mask_boxes, crop_box, image_box)
                masks = masks[inside]
                if coverage_points is not None:
                    confident = masks[iou[part][inside] >= self.coarse_iou_thresh]
                    covered |= confident[:, rows, columns].any(0).cpu()
                rles = masks_to_rle(pad_to_image(masks, crop_box, image_size))
                held = sum(rle['counts'].nbytes for rle in rles)
                if self._rle_bytes + held > RLE_BUDGET_BYTES:
                    rles = [None] * len(rles)
                else:
                    self._rle_bytes += held
                inside = inside.cpu()
                parts.append(_Proposals(rles, mask_boxes[inside].cpu(), iou[part][inside].cpu(),
                                        stability[part][inside].cpu(), prompts[source[part][inside]].float(),
                                        torch.tensor([crop_box]).expand(int(inside.sum()), 4),
                                        candidate[part][inside]))
                del masks
            bar.update(min(self.points_per_batch, len(prompts) - start))
        return _Proposals.cat(parts), covered

    def _decode_missing_masks(self, found: _Proposals, crop_box: List[int], image_size) -> None:
        """Decodes again the kept masks whose RLE went over the budget (prompts in crop pixels)."""
        missing = [i for i, rle in enumerate(found.rles) if rle is None]
        multimask_output = found.points.shape[1] == 1  # a box prompt asks for one mask
        labels = torch.tensor([LABEL_POINT] if multimask_output else [LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT],
                              dtype=torch.float)
        crop_h, crop_w = self.predictor.original_size
        chunk = max(1, UPSAMPLE_PIXELS // (crop_h * crop_w))
        for start in range(0, len(missing), self.points_per_batch):
            rows = torch.tensor(missing[start:start + self.points_per_batch])
            low_res, _ = self.predictor.decode_low_res(found.points[rows], labels.expand(len(rows), -1),
                                                       multimask_output)
            chosen = torch.take_along_dim(low_res, found.candidates[rows].to(low_res.device)[:, None, None, None], 1)
            for first in range(0, len(rows), chunk):
                masks = self.predictor.upsample(chosen[None, first:first + chunk, 0])[0] > self.predictor.mask_threshold
                rles = masks_to_rle(pad_to_image(masks, crop_box, image_size))
                for row, rle in zip(rows[first:first + chunk].tolist(), rles):
                    found.rles[row] = rle

    def _remove_small_regions(self, found: _Proposals) -> _Proposals:
        """Fills holes and drops islands under ``min_mask_region_area`` one mask at a time, then
        reruns box NMS preferring the masks this left unchanged (SAM's order)."""
        unchanged = torch.ones(len(found.rles))
        for index, rle in enumerate(found.rles):
            mask, filled = remove_small_regions(rle_to_mask(rle), self.min_mask_region_area, 'holes')
            mask, cut = remove_small_regions(mask, self.min_mask_region_area, 'islands')
            if filled or cut:
                unchanged[index] = 0
                tensor = torch.from_numpy(mask)[None]
                found.rles[index] = masks_to_rle(tensor)[0]
                found.boxes[index] = masks_to_boxes(tensor)[0]
        return found.select(nms(found.boxes.float(), unchanged, max(self.box_nms_thresh, self.crop_nms_thresh)))

    def _records(self, found: _Proposals) -> List[Dict[str, Any]]:
        encode = {'binary_mask': rle_to_mask, 'uncompressed_rle': rle_for_json, 'coco_rle': coco_rle}[self.output_mode]
        xywh = lambda box: [box[0], box[1], box[2] - box[0], box[3] - box[1]]  # noqa: E731
        return [{'segmentation': encode(rle), 'area': rle_area(rle), 'bbox': xywh(box),
                 'predicted_iou': iou, 'point_coords': points, 'stability_score': stability,
                 'crop_box': xywh(crop)}
                for rle, box, iou, points, stability, crop in zip(
                    found.rles, found.boxes.tolist(), found.iou.tolist(), found.points.tolist(),
                    found.stability.tolist(), found.crop_boxes.tolist())]
