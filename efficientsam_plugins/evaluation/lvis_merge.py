"""COCO masks upgraded with LVIS masks of the same objects (the SqueezeSAM blog's COCO protocol).

LVIS re-annotated COCO images (same image ids) with finer masks. Each non-crowd COCO annotation
takes the geometry (segmentation, area, bbox) of the LVIS annotation of the same image it
overlaps most, when their mask IoU reaches ``min_iou``; everything else (ids, categories, crowd
regions, images, categories) stays COCO's. Matching is one-to-one, greedy by IoU, so one LVIS
mask never replaces two COCO masks.

Default ``min_iou`` 0.7 (the blog names none): above 0.5 a mask can overlap at most one of a set
of disjoint masks that much, so the match is unambiguous; the margin above 0.5 leaves room for
two annotations of one object differing along the boundary while refusing a part or a group
matched to the whole. :func:`merge_lvis_masks` also counts the matches at other thresholds, so a
different choice can be judged from one run.
"""
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .dataset import coco_index

DEFAULT_MIN_IOU = 0.7
REPORTED_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _image_sizes(data: dict, what: str) -> Dict[int, Tuple[int, int]]:
    try:
        return {image['id']: (int(image['height']), int(image['width'])) for image in data['images']}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'{what}: an image entry lacks its id, height or width ({err!r})') from err


def _rles(api, anns: Sequence[dict], hw: Tuple[int, int], what: str) -> list:
    """Compressed RLEs of the annotations' masks (pycocotools cannot rasterise an empty polygon list)."""
    from pycocotools import mask as mask_api
    rles = []
    for ann in anns:
        try:
            rles.append(api.annToRLE(ann) if ann.get('segmentation') else
                        mask_api.encode(np.zeros(hw, dtype=np.uint8, order='F')))
        except (TypeError, ValueError, AttributeError, IndexError) as err:
            raise ValueError(f'{what}: annotation {ann["id"]} has a malformed segmentation ({err!r})') from err
    return rles


def _greedy_matches(iou: np.ndarray, min_iou: float) -> List[Tuple[int, int, float]]:
    """One-to-one (row, column, IoU) pairs, highest IoU first, each at least ``min_iou``."""
    rows, cols = np.nonzero(iou >= min_iou)
    order = np.argsort(-iou[rows, cols], kind='stable')
    used_rows, used_cols, matches = set(), set(), []
    for r, c in zip(rows[order], cols[order]):
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            matches.append((int(r), int(c), float(iou[r, c])))
    return matches


def merge_lvis_masks(coco: dict, lvis: dict, min_iou: float = DEFAULT_MIN_IOU) -> Tuple[dict, Dict[str, Any]]:
    """(a copy of ``coco`` with matched masks replaced, a report of counts): see the module docstring.
    Replaced annotations gain ``"lvis_id"`` and ``"lvis_iou"`` (their match) for traceability."""
    from pycocotools import mask as mask_api
    if not 0 < min_iou <= 1:
        raise ValueError(f'min_iou must be in (0, 1], got {min_iou}')
    coco_api, lvis_api = coco_index(coco, 'COCO annotation file'), coco_index(lvis, 'LVIS annotation file')
    coco_sizes, lvis_sizes = _image_sizes(coco, 'COCO annotation file'), _image_sizes(lvis, 'LVIS annotation file')
    replaced: Dict[int, dict] = {}
    best_ious: List[float] = []
    candidates = 0
    shared_images = [i for i in coco_sizes if i in lvis_sizes]
    for image_id in shared_images:
        if coco_sizes[image_id] != lvis_sizes[image_id]:
            raise ValueError(f'image {image_id} is {coco_sizes[image_id][1]}x{coco_sizes[image_id][0]} in the COCO '
                             f'file but {lvis_sizes[image_id][1]}x{lvis_sizes[image_id][0]} in the LVIS file')
        targets = [a for a in coco_api.imgToAnns.get(image_id, []) if not a.get('iscrowd', 0)]
        sources = lvis_api.imgToAnns.get(image_id, [])
        candidates += len(targets)
        if not targets or not sources:
            best_ious.extend([0.0] * len(targets))
            continue
        hw = coco_sizes[image_id]
        coco_rles = _rles(coco_api, targets, hw, 'COCO annotation file')
        lvis_rles = _rles(lvis_api, sources, hw, 'LVIS annotation file')
        iou = np.asarray(mask_api.iou(coco_rles, lvis_rles, [0] * len(sources)), dtype=np.float64)
        iou = iou.reshape(len(targets), len(sources))
        best_ious.extend(iou.max(axis=1).tolist())
        for row, col, value in _greedy_matches(iou, min_iou):
            source = sources[col]
            rle = lvis_rles[col]
            replaced[targets[row]['id']] = dict(
                segmentation=source['segmentation'], area=float(mask_api.area(rle)),
                bbox=[float(v) for v in mask_api.toBbox(rle)], lvis_id=source['id'], lvis_iou=round(value, 4))
    merged = dict(coco)
    merged['annotations'] = [{**ann, **replaced[ann['id']]} if ann['id'] in replaced else ann
                             for ann in coco['annotations']]
    best = np.asarray(best_ious)
    report = dict(
        min_iou=min_iou, coco_images=len(coco_sizes), images_in_lvis=len(shared_images),
        coco_non_crowd_masks=sum(not a.get('iscrowd', 0) for a in coco['annotations']),
        masks_on_lvis_images=candidates, replaced=len(replaced),
        best_iou_at_least={f'{t:.1f}': int((best >= t).sum()) for t in REPORTED_THRESHOLDS})
    return merged, report
