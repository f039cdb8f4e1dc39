"""Training prompts sampled from ground-truth masks as in SAM, appendix A (pure torch).

Masks are at the decoder's output resolution, prompts in the model's input pixels (``img_size``):
a point in low-resolution cell ``c`` is a uniform input pixel of that cell, so it lies inside the
mask the loss sees. Each query is, with equal probability, a point uniform over the mask or its
tight box with each coordinate shifted by N(0, (10% of the side)^2), capped at 20 pixels of a 1024
input. Iterative clicks are uniform over the previous error region, positive on a false negative
and negative on a false positive, as SAM's; a model without the negative-click embedding (the
released EfficientSAM) gets positive clicks uniform over the false negatives only.
"""
from typing import Optional, Tuple

import torch

from ..modeling.common import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_NEGATIVE, LABEL_PADDING, LABEL_POINT

REFERENCE_IMG_SIZE = 1024


def sample_points_in_masks(masks: torch.Tensor, scale: int = 1,
                           generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """One uniform point per mask: ``[Q, h, w]`` -> (``[Q, 2]`` (x, y) input pixels, ``[Q]`` valid);
    empty masks get the point (0, 0) and ``valid`` False."""
    flat = masks.flatten(1).float()
    valid = flat.sum(1) > 0
    weights = torch.where(valid[:, None], flat, torch.ones_like(flat))
    index = torch.multinomial(weights, 1, generator=generator)[:, 0]
    cells = torch.stack([index % masks.shape[-1], index // masks.shape[-1]], dim=1)
    offset = torch.randint(0, scale, cells.shape, device=cells.device, generator=generator)
    points = (cells * scale + offset).float()
    return torch.where(valid[:, None], points, torch.zeros_like(points)), valid


def mask_boxes(masks: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Tight pixel-edge boxes ``[Q, 4]`` (x1, y1, x2, y2) of non-empty masks ``[Q, h, w]``, in input pixels."""
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[-2:]
    ys, xs = torch.arange(h, device=masks.device), torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, h).amin(1)
    y2 = torch.where(rows, ys, -1).amax(1) + 1
    x1 = torch.where(cols, xs, w).amin(1)
    x2 = torch.where(cols, xs, -1).amax(1) + 1
    return torch.stack([x1, y1, x2, y2], 1).float() * scale


def jitter_boxes(boxes: torch.Tensor, img_size: int, std_fraction: float = 0.1,
                 max_shift: Optional[float] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Shifts each coordinate by N(0, (std_fraction * side)^2), capped at ``max_shift`` pixels
    (20 at a 1024 input by default), then clips to the image and keeps x2 >= x1, y2 >= y1."""
    if max_shift is None:
        max_shift = 20.0 * img_size / REFERENCE_IMG_SIZE
    sides = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1).repeat(1, 2)
    noise = torch.randn(boxes.shape, device=boxes.device, generator=generator) * std_fraction * sides
    corners = (boxes + noise.clamp(-max_shift, max_shift)).clamp(0, img_size).view(-1, 2, 2)
    return torch.cat([corners.amin(1), corners.amax(1)], 1)


def sample_prompts(masks: torch.Tensor, img_size: int, box_probability: float = 0.5,
                   generator: Optional[torch.Generator] = None,
                   click_masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """A box or one point per non-empty mask: (``[Q, 2, 2]`` input pixels, ``[Q, 2]`` labels); point
    queries carry a padding point (label -1, which the model pads with anyway) to share the tensor.
    ``click_masks`` (default ``masks``) is where the points are sampled: one part of a merged
    whole-object target, whose box stays the target's."""
    click_masks = masks if click_masks is None else click_masks
    if click_masks.shape != masks.shape:
        raise ValueError(f'click_masks {tuple(click_masks.shape)} must match masks {tuple(masks.shape)}')
    if not (masks.flatten(1).any(1).all() and click_masks.flatten(1).any(1).all()):
        raise ValueError('sample_prompts needs non-empty masks')
    scale = img_size // masks.shape[-1]
    q = masks.shape[0]
    use_box = torch.rand(q, device=masks.device, generator=generator) < box_probability
    boxes = jitter_boxes(mask_boxes(masks, scale), img_size, generator=generator)
    points, _ = sample_points_in_masks(click_masks, scale, generator)
    point_coords = torch.stack([points, torch.full_like(points, -1.0)], 1)
    coords = torch.where(use_box[:, None, None], boxes.view(q, 2, 2), point_coords)
    box_labels = torch.tensor([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], device=masks.device)
    point_labels = torch.tensor([LABEL_POINT, LABEL_PADDING], device=masks.device)
    return coords, torch.where(use_box[:, None], box_labels, point_labels).float()


def sample_error_clicks(predictions: torch.Tensor, masks: torch.Tensor, img_size: int,
                        generator: Optional[torch.Generator] = None,
                        negative: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Next click per query: bool ``[Q, h, w]`` prediction and ground truth to ``([Q, 1, 2] points,
    [Q, 1] labels)``, uniform over the false negatives (label 1) or, with ``negative``, over the whole
    error region (label 0 where it falls on a false positive); padding where there is no such region."""
    missed = masks & ~predictions
    region = missed | (predictions & ~masks) if negative else missed
    scale = img_size // masks.shape[-1]
    points, valid = sample_points_in_masks(region, scale, generator)
    cells = (points // scale).long()
    on_missed = missed[torch.arange(len(points), device=points.device), cells[:, 1], cells[:, 0]]
    points = torch.where(valid[:, None], points, torch.full_like(points, -1.0))
    labels = torch.where(on_missed, float(LABEL_POINT), float(LABEL_NEGATIVE))
    labels = torch.where(valid, labels, float(LABEL_PADDING))
    return points[:, None], labels[:, None]
