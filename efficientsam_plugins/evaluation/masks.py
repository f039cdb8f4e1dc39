"""Binary-mask utilities shared by the evaluation tools: decoding, RLE, boxes, IoU, size buckets."""
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


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO/LVIS/SA-1B ``segmentation`` (polygons, RLE or uncompressed RLE) as bool ``[H, W]``."""
    mask_api = coco_mask_api()
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and 'counts' in segmentation and 'size' in segmentation:
        if list(segmentation['size']) != [height, width]:
            raise ValueError(f'RLE of size {segmentation["size"]} on a {height}x{width} image')
        rle = segmentation
        if isinstance(rle['counts'], list):
            rle = mask_api.frPyObjects(rle, height, width)
        elif isinstance(rle['counts'], str):
            rle = dict(rle, counts=rle['counts'].encode('ascii'))
    else:
        raise ValueError(f'unsupported segmentation of type {type(segmentation).__name__}: expected '
                         f'polygons (a list) or RLE (a dict with "size" and "counts")')
    return mask_api.decode(rle).astype(bool)


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
