"""SqueezeSAM's whole-object augmentations (arXiv 2312.06736, section 4) as plain torch functions.

A click on a person's T-shirt should select the whole person and what they hold, while SA-1B's
masks are parts and single objects. Three changes of the training samples teach that:

* mask merging (:func:`merge_whole_objects`): a query's target becomes the union of its mask and
  the masks that contain it (its whole) or touch / overlap it, while its click is still sampled on
  the original part;
* outlier injection (:func:`sample_outlier_clicks`): clicks outside the target join the prompt,
  so that stray background clicks do not change the mask;
* centre crop around a random object (:func:`object_crop_box`): a window around one object at a
  random scale and offset, so objects fill the input as in a photo that frames them.

Masks are bool ``[N, H, W]``; randomness comes from ``generator`` (None: torch's global one).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .prompt_sampling import mask_boxes, sample_points_in_masks


def _check_masks(masks: torch.Tensor, what: str = 'masks') -> None:
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise ValueError(f'{what} must be bool [N, H, W], got {masks.dtype} {tuple(masks.shape)}')


def _uniform(generator: Optional[torch.Generator], *shape: int, device=None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Each mask grown by ``pixels`` (a square structuring element), as bool ``[N, H, W]``."""
    if pixels <= 0:
        return masks
    grown = F.max_pool2d(masks[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] > 0


def whole_object_relations(masks: torch.Tensor, touch_distance: int = 1,
                           containment: float = 0.8) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bool ``[N, N]`` matrices ``(wholes, neighbours)``: ``wholes[i, j]`` when mask ``j`` is larger
    and covers at least ``containment`` of mask ``i`` (``i`` is a part of ``j``); ``neighbours[i, j]``
    when ``j`` overlaps ``i`` or comes within ``touch_distance`` pixels of it. The diagonal is False.
    One ``[N, HW] x [HW, N]`` product each; no per-pair loop."""
    _check_masks(masks)
    flat = masks.flatten(1).float()
    area = flat.sum(1)
    overlap = flat @ flat.T
    touching = dilate(masks, touch_distance).flatten(1).float() @ flat.T
    eye = torch.eye(len(masks), dtype=torch.bool, device=masks.device)
    wholes = (overlap >= containment * area[:, None]) & (area[None, :] > area[:, None]) & ~eye
    return wholes, (touching > 0) & ~eye


def merge_whole_objects(masks: torch.Tensor, probability: float = 0.5, merge_parts: bool = True,
                        merge_touching: bool = True, neighbour_probability: float = 1.0,
                        touch_distance: int = 1, containment: float = 0.8,
                        generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Targets and click regions for one query per mask: ``(targets, click_masks)``, both bool ``[N, H, W]``.

    With ``probability`` a query is merged: its target becomes the union of its mask and, with
    ``merge_parts``, the masks it is a part of (:func:`whole_object_relations`) and, with
    ``merge_touching``, the masks that touch or overlap it, each related mask joining with
    ``neighbour_probability`` (one hop, so a chain of touching objects does not flood the image).
    ``click_masks`` is always the query's own mask: the prompt lies on one of the merged parts.
    """
    _check_masks(masks)
    for name, value in (('probability', probability), ('neighbour_probability', neighbour_probability),
                        ('containment', containment)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f'{name} must be in [0, 1], got {value}')
    n = len(masks)
    if n == 0:
        return masks, masks
    wholes, neighbours = whole_object_relations(masks, touch_distance, containment)
    related = torch.zeros_like(wholes)
    if merge_parts:
        related |= wholes
    if merge_touching:
        related |= neighbours
    merged = _uniform(generator, n, device=masks.device) < probability
    joins = related & merged[:, None] & (_uniform(generator, n, n, device=masks.device) < neighbour_probability)
    joins |= torch.eye(n, dtype=torch.bool, device=masks.device)
    targets = (joins.float() @ masks.flatten(1).float()).view_as(masks) > 0
    return targets, masks


def sample_outlier_clicks(targets: torch.Tensor, max_clicks: int = 2, probability: float = 0.5,
                          margin: int = 0, scale: int = 1,
                          generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Background clicks per query: ``(points [Q, max_clicks, 2] (x, y) in input pixels, valid [Q, max_clicks])``.

    With ``probability`` a query gets between 1 and ``max_clicks`` clicks, uniform over the pixels
    farther than ``margin`` pixels from its target (``scale`` input pixels per mask pixel, as
    :func:`~.prompt_sampling.sample_points_in_masks`); a
    query whose target leaves no such pixel gets none. Invalid slots hold (-1, -1).
    """
    _check_masks(targets, 'targets')
    if max_clicks < 1:
        raise ValueError(f'max_clicks must be >= 1, got {max_clicks}')
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f'probability must be in [0, 1], got {probability}')
    q = len(targets)
    background = ~dilate(targets, margin)
    counts = torch.randint(1, max_clicks + 1, (q,), generator=generator, device=targets.device)
    counts = torch.where(_uniform(generator, q, device=targets.device) < probability, counts, 0)
    repeated = background.repeat_interleave(max_clicks, 0)
    points, has_background = sample_points_in_masks(repeated, scale, generator)
    slots = torch.arange(max_clicks, device=targets.device)
    valid = has_background.view(q, max_clicks) & (slots[None, :] < counts[:, None])
    points = points.view(q, max_clicks, 2)
    return torch.where(valid[..., None], points, torch.full_like(points, -1.0)), valid


def mask_box(mask: torch.Tensor) -> Tuple[int, int, int, int]:
    """Tight pixel-edge box ``(x1, y1, x2, y2)`` of a non-empty bool ``[H, W]`` mask."""
    if not mask.any():
        raise ValueError('the object to crop around has an empty mask')
    return tuple(int(v) for v in mask_boxes(mask[None])[0])


def object_crop_box(object_box: Sequence[int], image_size: Tuple[int, int],
                    context: Tuple[float, float] = (1.5, 4.0),
                    generator: Optional[torch.Generator] = None) -> Tuple[int, int, int, int]:
    """A window ``(x1, y1, x2, y2)`` around ``object_box`` in an image of ``(height, width)``.

    Its side is the object's longer side times a factor uniform in ``context`` (a square window,
    so the square model input does not stretch the object), grown where needed to contain the
    object and cut to the image; its offset is uniform over the positions that keep the whole
    object inside the window and the window inside the image.
    """
    low, high = context
    if not 1.0 <= low <= high:
        raise ValueError(f'context must be (low, high) with 1 <= low <= high, got {context}')
    x1, y1, x2, y2 = object_box
    height, width = image_size
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f'object box {tuple(object_box)} is not inside the {width}x{height} image')
    factor = low + (high - low) * float(_uniform(generator, 1))
    side = round(max(x2 - x1, y2 - y1) * factor)
    crop_w, crop_h = min(max(side, x2 - x1), width), min(max(side, y2 - y1), height)
    offsets = _uniform(generator, 2)
    left_lo, left_hi = max(0, x2 - crop_w), min(x1, width - crop_w)
    top_lo, top_hi = max(0, y2 - crop_h), min(y1, height - crop_h)
    left = left_lo + min(int(offsets[0] * (left_hi - left_lo + 1)), left_hi - left_lo)
    top = top_lo + min(int(offsets[1] * (top_hi - top_lo + 1)), top_hi - top_lo)
    return left, top, left + crop_w, top + crop_h


def crop_masks(masks: torch.Tensor, box: Sequence[int], min_visible: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masks cut to ``box`` and the indices of those kept: non-empty inside the window and, with
    ``min_visible`` > 0, keeping at least that fraction of their area."""
    _check_masks(masks)
    x1, y1, x2, y2 = box
    cropped = masks[:, y1:y2, x1:x2]
    area, visible = masks.flatten(1).sum(1), cropped.flatten(1).sum(1)
    keep = ((visible > 0) & (visible >= min_visible * area)).nonzero()[:, 0]
    return cropped[keep], keep
