"""Click simulation for promptable evaluation (SAM / RITM protocol, positive clicks only).

Clicks are ``(x, y)`` integer pixel indices of the original image (the prompt encoder adds the
half-pixel offset). First click ``center`` (SAM's): the maximum of the distance transform, the image
border counting as boundary (as RITM's padding), ties to the first pixel in raster order;
``random`` (the EfficientSAM paper's): uniform over the mask, seeded by ``(seed, image_id,
annotation_id)`` so a click never depends on batching or on which other images are evaluated.

Later clicks ``error``: SAM/RITM click the centre of the larger of the false-negative and
false-positive regions, positive or negative; the released EfficientSAM weights have no
negative-point embedding, so here the click always goes to the centre of the false-negative region,
and an instance whose prediction misses nothing keeps its clicks and prediction. ``random``: uniform
over the ground truth, independent of the prediction.
"""
from typing import Optional, Tuple

import numpy as np

CLICK_PROTOCOLS = ('random', 'center')
LATER_CLICK_PROTOCOLS = ('error', 'random')
Click = Tuple[float, float]


def center_click(mask: np.ndarray) -> Click:
    """The pixel farthest from the boundary of a non-empty mask (first in raster order on ties)."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError('click simulation needs OpenCV for the distance transform: pip install '
                          'opencv-python (pinned in requirements.txt)') from err
    if not mask.any():
        raise ValueError('cannot click on an empty mask')
    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    y, x = np.unravel_index(int(np.argmax(distance[1:-1, 1:-1])), mask.shape)
    return float(x), float(y)


def click_rng(seed: int, image_id: int, annotation_id: int) -> np.random.Generator:
    """The generator of one instance's random clicks."""
    return np.random.default_rng([int(seed), int(image_id), int(annotation_id)])


def random_click(mask: np.ndarray, rng: np.random.Generator) -> Click:
    """A pixel drawn uniformly from a non-empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError('cannot click on an empty mask')
    i = int(rng.integers(ys.size))
    return float(xs[i]), float(ys[i])


def next_positive_click(prediction: np.ndarray, gt: np.ndarray) -> Optional[Click]:
    """Centre of the false-negative region, or None when the prediction covers the whole ground truth."""
    missed = gt & ~prediction
    return center_click(missed) if missed.any() else None
