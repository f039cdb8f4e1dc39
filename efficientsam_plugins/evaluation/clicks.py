"""Click simulation for promptable evaluation: the EfficientSAM paper's and SAM's (RITM's) protocols.

Clicks are ``(x, y)`` integer pixel indices of the original image (the prompt encoder adds the
half-pixel offset). First click ``center`` (SAM's): the maximum of the distance transform, the image
border counting as boundary (as RITM's padding), ties to the first pixel in raster order;
``random`` (the EfficientSAM paper's): uniform over the mask, seeded by ``(seed, image_id,
annotation_id)`` so a click never depends on batching or on which other images are evaluated.

Later clicks ``random`` (the paper's): uniform over the ground truth, independent of the
prediction. ``error`` (SAM/RITM): the centre of the larger of the false-negative and false-positive
regions, a negative click when that is the false positives; with a model that has no negative-click
input (the released EfficientSAM weights) the click goes to the centre of the false-negative region.
An instance whose prediction has no (usable) error region keeps its clicks and prediction.
"""
from typing import Dict, Optional, Tuple

import numpy as np

CLICK_PROTOCOLS = ('random', 'center')
LATER_CLICK_PROTOCOLS = ('error', 'random')
CLICK_PRESETS: Dict[str, Tuple[str, str]] = {'paper': ('random', 'random'), 'sam': ('center', 'error')}
Click = Tuple[float, float]


def _distance_to_boundary(mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel of ``mask`` to the nearest pixel outside it (the border counts as outside)."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError('click simulation needs OpenCV for the distance transform: pip install '
                          'opencv-python (pinned in requirements.txt)') from err
    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[1:-1, 1:-1]


def _argmax_click(distance: np.ndarray) -> Click:
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def center_click(mask: np.ndarray) -> Click:
    """The pixel farthest from the boundary of a non-empty mask (first in raster order on ties)."""
    if not mask.any():
        raise ValueError('cannot click on an empty mask')
    return _argmax_click(_distance_to_boundary(mask))


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


def next_error_click(prediction: np.ndarray, gt: np.ndarray) -> Optional[Tuple[Click, bool]]:
    """SAM's (RITM's) next click: ``(centre, positive)`` of whichever of the false-negative and
    false-positive regions reaches farther from its boundary (false negatives on ties), or None when
    the prediction is exact."""
    missed, extra = gt & ~prediction, prediction & ~gt
    if not (missed.any() or extra.any()):
        return None
    to_missed, to_extra = _distance_to_boundary(missed), _distance_to_boundary(extra)
    positive = to_missed.max() >= to_extra.max()
    return _argmax_click(to_missed if positive else to_extra), bool(positive)
