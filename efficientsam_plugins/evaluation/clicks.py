"""Click simulation for promptable evaluation (SAM / RITM protocol, positive clicks only).

Clicks are ``(x, y)`` integer pixel indices of the original image (the prompt encoder adds the
half-pixel offset itself).

* ``center`` (SAM's first click): the mask pixel farthest from the mask boundary, the maximum of
  the Euclidean distance transform with the image border counting as boundary (RITM pads the mask
  by one background pixel); ties go to the first pixel in raster order.
* ``random`` (the EfficientSAM paper's protocol): uniform over the mask pixels, from a generator
  seeded by ``(seed, image_id, annotation_id)`` so a click never depends on batching or on which
  other images are evaluated.

Later clicks (``error``, as in SAM/RITM) go to the centre of the largest error region: the
distance-transform maximum of the error mask. SAM/RITM compare the false-negative region
(ground truth the prediction missed) with the false-positive region and put a positive click in
the first or a negative click in the second, whichever is larger. The released EfficientSAM
weights have no negative-point embedding, so here the click always goes to the centre of the
false-negative region, even when the false-positive region is larger; when the prediction misses
no ground-truth pixel at all, no click can help, so the instance keeps its previous clicks and
prediction (:func:`next_positive_click` returns None). ``random`` later clicks are uniform over
the ground-truth mask instead, independent of the prediction.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

CLICK_PROTOCOLS = ('random', 'center')
LATER_CLICK_PROTOCOLS = ('error', 'random')
Click = Tuple[float, float]


def distance_transform(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every mask pixel to the nearest background pixel or image border."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError('click simulation needs OpenCV for the distance transform: pip install '
                          'opencv-python (pinned in requirements.txt)') from err
    padded = np.pad(mask.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def center_click(mask: np.ndarray) -> Click:
    """The pixel farthest from the boundary of a non-empty mask (first in raster order on ties)."""
    if not mask.any():
        raise ValueError('cannot click on an empty mask')
    y, x = np.unravel_index(int(np.argmax(distance_transform(mask))), mask.shape)
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


def first_click(mask: np.ndarray, protocol: str, rng: np.random.Generator) -> Click:
    if protocol == 'center':
        return center_click(mask)
    if protocol == 'random':
        return random_click(mask, rng)
    raise ValueError(f'unknown click protocol {protocol!r}; expected one of {CLICK_PROTOCOLS}')


def next_positive_click(prediction: np.ndarray, gt: np.ndarray) -> Optional[Click]:
    """Centre of the false-negative region, or None when the prediction covers the whole ground truth."""
    missed = gt & ~prediction
    if not missed.any():
        return None
    return center_click(missed)


def later_click(prediction: np.ndarray, gt: np.ndarray, protocol: str,
                rng: np.random.Generator) -> Optional[Click]:
    if protocol == 'error':
        return next_positive_click(prediction, gt)
    if protocol == 'random':
        return random_click(gt, rng)
    raise ValueError(f'unknown later-click protocol {protocol!r}; expected one of {LATER_CLICK_PROTOCOLS}')


def parse_click_counts(values: Sequence[int]) -> Tuple[int, ...]:
    counts = tuple(sorted({int(v) for v in values}))
    if any(c < 1 for c in counts):
        raise ValueError(f'click counts must be >= 1, got {list(values)}')
    return counts
