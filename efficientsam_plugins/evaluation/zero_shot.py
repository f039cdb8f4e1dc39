"""Zero-shot instance segmentation: detector boxes in, one mask per box out, mask AP.

Detections use the COCO results format (``image_id``, ``category_id``, ``bbox`` as x, y, w, h,
``score``). Each box prompts the segmenter; the result keeps the detection's category and score,
as in SAM's and EfficientSAM's zero-shot protocol, and is scored with pycocotools (COCO) or the
``lvis`` package (LVIS); results carry no ``bbox`` (see :func:`evaluate_segmentation`).
"""
import contextlib
import copy
import io
import math
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock

import numpy as np
from tqdm import tqdm

from .dataset import InstanceDataset, read_json
from .masks import encode_mask
from .segmenters import PromptBatch, Segmenter

COCO_METRICS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')
LVIS_METRICS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf')
Detection = Tuple[int, Dict[str, Any]]  # (index in the detections file, the detection)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_detections(path: str, dataset: InstanceDataset, score_thr: float = 0.0,
                    max_per_image: Optional[int] = None) -> Dict[int, List[Detection]]:
    """Validated detections per image, boxes clipped to the image, best ``max_per_image`` kept;
    every malformed entry is reported in one error."""
    data = read_json(path, 'detections file')
    if not isinstance(data, list):
        raise ValueError(f'detections file {path} must hold a list of COCO-format results, '
                         f'got a {type(data).__name__}')
    problems, by_image = [], defaultdict(list)
    for index, det in enumerate(data):
        problem = _check_detection(det, dataset)
        if problem:
            problems.append(f'entry {index}: {problem}')
            continue
        if det['score'] >= score_thr:
            info = dataset.images[det['image_id']]
            x, y, w, h = (float(v) for v in det['bbox'])
            clipped = [max(0.0, x), max(0.0, y), min(float(info.width), x + w), min(float(info.height), y + h)]
            by_image[det['image_id']].append((index, dict(det, box_xyxy=clipped)))
    if problems:
        raise ValueError(f'detections file {path}: {len(problems)} of {len(data)} entries are malformed: '
                         + '; '.join(problems[:5]) + (' ...' if len(problems) > 5 else ''))
    return {i: sorted(dets, key=lambda item: -item[1]['score'])[:max_per_image] for i, dets in by_image.items()}


def _check_detection(det: Any, dataset: InstanceDataset) -> Optional[str]:
    if not isinstance(det, dict):
        return f'not a dict ({type(det).__name__})'
    image_id = det.get('image_id')
    if not isinstance(image_id, int) or image_id not in dataset.images:
        return f'unknown image id {image_id!r}'
    if dataset.categories and det.get('category_id') not in dataset.categories:
        return f'unknown category id {det.get("category_id")!r}'
    if not _finite_number(det.get('score')):
        return f'score must be a finite number, got {det.get("score")!r}'
    box = det.get('bbox')
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_finite_number(v) for v in box):
        return f'bbox must be 4 finite numbers [x, y, w, h], got {box!r}'
    if box[2] <= 0 or box[3] <= 0:
        return f'bbox {box} has no positive width and height'
    info = dataset.images[image_id]
    x, y, w, h = box
    if x + w <= 0 or y + h <= 0 or x >= info.width or y >= info.height:
        return f'bbox {box} lies outside the {info.width}x{info.height} image {image_id}'
    return None


def segment_detections(dataset: InstanceDataset, segmenter: Segmenter,
                       detections: Dict[int, List[Detection]], progress: bool = True) -> List[Dict[str, Any]]:
    """COCO-format segmentation results (no ``bbox``), one per detection, in image order then score order."""
    image_ids = sorted(detections)
    if segmenter.needs_image:
        dataset.check_images_exist(image_ids)
    bar = tqdm(image_ids, unit='image', disable=not progress)
    results = []
    for image_id in bar:
        dets = detections[image_id]
        image = dataset.load_image(image_id) if segmenter.needs_image else None
        segmenter.set_image(image, dataset.images[image_id])
        boxes = np.array([det['box_xyxy'] for _, det in dets], dtype=np.float32)
        masks = segmenter.segment(PromptBatch([index for index, _ in dets], boxes=boxes)).masks
        for (_, det), mask in zip(dets, masks):
            results.append(dict(image_id=image_id, category_id=det['category_id'], score=float(det['score']),
                                segmentation=encode_mask(mask)))
        bar.set_postfix_str(f'{len(results)} masks', refresh=False)
    return results


def evaluate_segmentation(ann_file: str, results: List[Dict[str, Any]], data_format: str,
                          max_dets: Optional[int] = None) -> Dict[str, Any]:
    """Mask AP of ``results`` against ``ann_file``: ``{'AP': ..., 'APs': ..., 'summary': text}``.

    The evaluators get a copy without ``bbox`` (both add fields to their input): with a box they
    take a result's area from it, not from its mask, and put unmatched masks in the wrong size range
    of APs/APm/APl; detectron2 and mmdet drop it for mask AP as well.
    """
    if not results:
        raise ValueError('no segmentation results to evaluate (no detection passed the score threshold)')
    results = [{k: v for k, v in copy.deepcopy(r).items() if k != 'bbox'} for r in results]
    text = io.StringIO()
    if data_format == 'lvis':
        try:
            from lvis import LVIS, LVISEval, LVISResults
        except ImportError as err:
            raise ImportError('LVIS evaluation needs the lvis package: pip install lvis==0.5.3') from err
        # lvis 0.5.3, the last release, uses np.float, which numpy 1.24 removed: lent for the evaluation only
        with contextlib.redirect_stdout(text), mock.patch.object(np, 'float', float, create=True):
            gt = LVIS(ann_file)
            evaluator = LVISEval(gt, LVISResults(gt, results, max_dets=max_dets or 300), 'segm')
            evaluator.run()
            evaluator.print_results()
        metrics = {k: float(evaluator.results[k]) for k in LVIS_METRICS}
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        with contextlib.redirect_stdout(text):
            gt = COCO(ann_file)
            evaluator = COCOeval(gt, gt.loadRes(results), 'segm')
            if max_dets:
                evaluator.params.maxDets = [1, 10, max_dets]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics = {k: float(v) for k, v in zip(COCO_METRICS, evaluator.stats[:6])}
    metrics['summary'] = text.getvalue()
    return metrics
