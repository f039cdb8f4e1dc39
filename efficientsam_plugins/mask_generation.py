"""Model-independent pieces of "segment everything" (SAM's automatic mask generation): point grids,
crop boxes, stability scores, boxes around masks and run-length encoding.

Conventions follow ``segment_anything.utils.amg`` so records port between the two: points are
(x, y) fractions of the image at the grid's cell centres, boxes are XYXY with inclusive right and
bottom pixel indices (``[0, 0, 0, 0]`` for an empty mask), RLE is COCO's column-major
``{'size': [h, w], 'counts': [...]}`` starting with a run of zeros. Only torch and numpy here; OpenCV
and pycocotools are imported by the two functions that need them.
"""
import math
from itertools import product
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

# A mask box this close (pixels) to a crop edge that is not an image edge was cut by the crop.
CROP_EDGE_TOLERANCE = 20.0


def point_grid(n_per_side: int) -> np.ndarray:
    """``[n*n, 2]`` (x, y) in (0, 1) at the centres ``(k + 0.5) / n`` of an n x n grid, x fastest."""
    centres = (np.arange(n_per_side) + 0.5) / n_per_side
    ys, xs = np.meshgrid(centres, centres, indexing='ij')
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale_factor: int) -> List[np.ndarray]:
    """One grid per crop layer; layer ``i`` has ``n_per_side / downscale_factor**i`` points a side,
    since its crops are that much smaller."""
    return [point_grid(int(n_per_side / downscale_factor ** i)) for i in range(n_layers + 1)]


def crop_boxes(image_size: Tuple[int, int], n_layers: int,
               overlap_ratio: float) -> Tuple[List[List[int]], List[int]]:
    """XYXY crops of an ``(h, w)`` image and their layer: the whole image (layer 0), then for layer
    ``i`` a ``2**i x 2**i`` grid of crops overlapping by ``overlap_ratio`` of the short side
    (scaled by ``2 / 2**i``)."""
    h, w = image_size
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2 ** layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        crop_w, crop_h = (int(math.ceil((overlap * (n - 1) + side) / n)) for side in (w, h))
        for x0, y0 in product(((crop_w - overlap) * i for i in range(n)),
                              [(crop_h - overlap) * i for i in range(n)]):
            boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
            layers.append(layer)
    return boxes, layers


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold + offset`` and ``threshold - offset`` (the first
    lies inside the second): how little the mask moves with the threshold. ``[..., h, w]`` -> ``[...]``."""
    inner = (logits > threshold + offset).flatten(-2).sum(-1, dtype=torch.int64)
    outer = (logits > threshold - offset).flatten(-2).sum(-1, dtype=torch.int64)
    return inner / outer


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, H, W]`` to XYXY ``[N, 4]`` (inclusive max indices; zeros for an empty mask)."""
    rows, cols = masks.any(-1), masks.any(-2)  # [N, H], [N, W]

    def first_last(hits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        first = hits.to(torch.uint8).argmax(-1)
        last = hits.shape[-1] - 1 - hits.flip(-1).to(torch.uint8).argmax(-1)
        return first, last

    (y0, y1), (x0, x1) = first_last(rows), first_last(cols)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return boxes * rows.any(-1, keepdim=True)


def box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int],
                       tolerance: float = CROP_EDGE_TOLERANCE) -> torch.Tensor:
    """Whether each XYXY box (crop coordinates) touches an edge of ``crop_box`` that is not an edge
    of ``image_box`` (both XYXY in image coordinates): such masks were cut off by the crop."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float, device=boxes.device)
    boxes = boxes.float() + crop[:2].repeat(2)
    near_crop = torch.isclose(boxes, crop[None], atol=tolerance, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=tolerance, rtol=0)
    return (near_crop & ~near_image).any(-1)


def pad_to_image(masks: torch.Tensor, crop_box: Sequence[int], image_size: Tuple[int, int]) -> torch.Tensor:
    """``[N, h, w]`` masks of a crop placed in the ``(H, W)`` image (zeros outside the crop)."""
    x0, y0, x1, y1 = crop_box
    h, w = image_size
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return masks
    return torch.nn.functional.pad(masks, (x0, w - x1, y0, h - y1))


def masks_to_rle(masks: torch.Tensor) -> List[Dict[str, Any]]:
    """Bool ``[N, H, W]`` to uncompressed COCO RLE, counts as int32 numpy arrays (4 bytes per run,
    where a list of Python ints takes 36; :func:`rle_for_json` turns them into lists)."""
    if masks.shape[1] * masks.shape[2] >= 2 ** 31:
        raise ValueError(f'masks of {masks.shape[1]}x{masks.shape[2]} pixels are too large for COCO RLE')
    n, h, w = masks.shape
    flat = masks.transpose(1, 2).reshape(n, h * w)  # COCO runs go down the columns
    # Runs start at 0, at every change and (as a sentinel) at the end; a mask starting with a 1
    # gets an empty first run of zeros.
    changes = torch.nonzero(flat[:, 1:] != flat[:, :-1])
    per_mask = torch.bincount(changes[:, 0], minlength=n).tolist()
    starts = (changes[:, 1] + 1).cpu().split(per_mask)
    first_on = flat[:, 0].cpu().tolist()
    rles = []
    for mask_starts, on in zip(starts, first_on):
        bounds = np.concatenate([[0], mask_starts.numpy(), [h * w]])
        counts = np.diff(bounds).astype(np.int32)
        rles.append({'size': [h, w], 'counts': np.concatenate([np.zeros(1, np.int32), counts]) if on else counts})
    return rles


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Uncompressed COCO RLE to a bool ``[H, W]`` array."""
    h, w = rle['size']
    counts = np.asarray(rle['counts'], dtype=np.int64)
    values = (np.arange(len(counts)) % 2).astype(bool)
    return np.repeat(values, counts).reshape(w, h).T


def rle_area(rle: Dict[str, Any]) -> int:
    return int(np.asarray(rle['counts'][1::2], dtype=np.int64).sum())


def rle_for_json(rle: Dict[str, Any]) -> Dict[str, Any]:
    """Uncompressed RLE with its counts as a list of ints (what ``json`` and pycocotools take)."""
    return {'size': list(rle['size']), 'counts': np.asarray(rle['counts']).tolist()}


def coco_rle(rle: Dict[str, Any]) -> Dict[str, Any]:
    """Uncompressed RLE to COCO's compressed RLE with ``counts`` as a str (JSON-ready)."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as err:
        raise ImportError("output_mode='coco_rle' needs pycocotools: pip install pycocotools") from err
    h, w = rle['size']
    compressed = mask_utils.frPyObjects(rle_for_json(rle), h, w)
    return {'size': compressed['size'], 'counts': compressed['counts'].decode('ascii')}


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> Tuple[np.ndarray, bool]:
    """``mask`` with its holes (``mode='holes'``) or islands (``'islands'``) under ``min_area``
    pixels removed (8-connected), and whether anything changed; an island mask keeps at least its
    largest region."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError('min_mask_region_area > 0 needs OpenCV: pip install opencv-python') from err
    if mode not in ('holes', 'islands'):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == 'holes'
    regions = (~mask if holes else mask).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(regions, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the complement of the regions
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n_labels), small)
    if len(keep) == 0:  # every island is small: keep the largest
        keep = [int(np.argmax(sizes)) + 1]
    return np.isin(labels, keep), len(keep) < len(sizes)
