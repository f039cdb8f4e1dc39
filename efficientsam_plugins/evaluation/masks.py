"""Binary-mask utilities shared by the evaluation tools: RLE, boxes, IoU, size buckets."""
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

# COCO's area thresholds (in pixels of the ground-truth mask): small < 32^2 <= medium < 96^2 <= large.
SMALL_AREA, LARGE_AREA = 32 ** 2, 96 ** 2
SIZE_BUCKETS = ('small', 'medium', 'large')


def coco_mask_api():
    """``pycocotools.mask``, imported on first use so the package imports without it."""
    try:
        from pycocotools import mask as mask_api
    except ImportError as err:
        raise ImportError('the evaluation tools need pycocotools to read COCO/LVIS masks: '
                          'pip install pycocotools (pinned in requirements.txt)') from err
    return mask_api


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """Bool ``[H, W]`` to JSON-ready compressed RLE ``{"size": [H, W], "counts": str}``."""
    rle = coco_mask_api().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def tight_box(mask: np.ndarray) -> List[float]:
    """Pixel-edge box ``[x1, y1, x2, y2]`` of a non-empty mask (COCO's convention: x2 = last column + 1)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError('tight_box of an empty mask')
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    if pred.shape != gt.shape:
        raise ValueError(f'mask shapes differ: prediction {pred.shape} vs ground truth {gt.shape}')
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def size_bucket(area: float) -> str:
    """COCO size class of a ground-truth mask area."""
    if area < SMALL_AREA:
        return 'small'
    return 'medium' if area < LARGE_AREA else 'large'


def xywh_to_xyxy(box: Sequence[float]) -> Tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return x, y, x + w, y + h
