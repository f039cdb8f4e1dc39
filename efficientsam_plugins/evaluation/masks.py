"""Binary-mask utilities shared by the evaluation tools: RLE, boxes, IoU, size buckets."""
from typing import Any, Dict, List

import numpy as np

SIZE_BUCKETS = ('small', 'medium', 'large')


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """Bool ``[H, W]`` to JSON-ready compressed RLE ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_api
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def tight_box(mask: np.ndarray) -> List[float]:
    """Pixel-edge box ``[x1, y1, x2, y2]`` of a non-empty mask (COCO's convention: x2 = last column + 1)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    if pred.shape != gt.shape:
        raise ValueError(f'mask shapes differ: prediction {pred.shape} vs ground truth {gt.shape}')
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def size_bucket(area: float) -> str:
    """COCO size class of a ground-truth mask area: small < 32^2 <= medium < 96^2 <= large."""
    return 'small' if area < 32 ** 2 else 'medium' if area < 96 ** 2 else 'large'
