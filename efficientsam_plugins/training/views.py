"""Cutting dense teacher maps of a whole image to the token grid of an augmented view.

A view is described by its crop box in normalised whole-image coordinates ``(x1, y1, x2, y2)``
in [0, 1] (as cut before resizing) and a horizontal flip applied after the crop. RoIAlign
(``aligned=True``, adaptive sampling) samples the map at the centres of the view's tokens, so the
whole-image box with an output the size of the map returns the map unchanged.
"""
from typing import Sequence, Tuple, Union

import torch
from torchvision.ops import roi_align

FULL_BOX = (0.0, 0.0, 1.0, 1.0)


def compose_boxes(outer: Sequence[float], inner: Sequence[float]) -> Tuple[float, float, float, float]:
    """The box ``inner`` (normalised within the crop ``outer``) in ``outer``'s frame."""
    x1, y1, x2, y2 = (float(v) for v in outer)
    w, h = x2 - x1, y2 - y1
    return tuple(float(o + v * s) for o, v, s in zip((x1, y1, x1, y1), inner, (w, h, w, h)))


def crop_to_views(maps: torch.Tensor, boxes: Union[torch.Tensor, Sequence[Sequence[float]]],
                  flips: Union[torch.Tensor, Sequence[bool]], out_hw: Tuple[int, int]) -> torch.Tensor:
    """Per-view features ``[B, C, *out_hw]`` from whole-image maps ``[B, C, H, W]``, ``boxes``
    ``[B, 4]`` and ``flips`` ``[B]``."""
    b, _, h, w = maps.shape
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=maps.device).reshape(-1, 4)
    flips = torch.as_tensor(flips, dtype=torch.bool, device=maps.device).reshape(-1)
    if (boxes[:, 2:] <= boxes[:, :2]).any() or (boxes < -1e-6).any() or (boxes > 1 + 1e-6).any():
        raise ValueError(f'view boxes must be (x1, y1, x2, y2) in [0, 1] with x1 < x2 and y1 < y2, '
                         f'got {boxes.tolist()}')
    rois = torch.cat([torch.arange(b, device=maps.device, dtype=torch.float32)[:, None],
                      boxes * boxes.new_tensor([w, h, w, h])], dim=1)
    out = roi_align(maps.float(), rois, output_size=tuple(out_hw), sampling_ratio=-1, aligned=True)
    return torch.where(flips[:, None, None, None], out.flip(-1), out)


def resize_to_grid(maps: torch.Tensor, out_hw: Tuple[int, int]) -> torch.Tensor:
    """Whole maps ``[B, C, H, W]`` resampled to ``out_hw`` the same way cached maps are cut."""
    if tuple(maps.shape[-2:]) == tuple(out_hw):
        return maps
    b = maps.shape[0]
    return crop_to_views(maps, [FULL_BOX] * b, [False] * b, out_hw).to(maps.dtype)
