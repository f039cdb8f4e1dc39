"""Early fusion: the user's prompts drawn as extra input channels beside the normalised image.

SqueezeSAM has no prompt encoder; a box becomes a filled rectangle channel and clicks become
disks of ``click_radius`` pixels on the model's square input grid. The channels are drawn with
small per-point stencils and separable box tests, so memory grows with queries x grid (the output
itself), never with queries x grid x points.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import LABEL_NEGATIVE, LABEL_POINT, PIXEL_MEAN, PIXEL_STD


def click_disks(points: torch.Tensor, selected: torch.Tensor, size: int, radius: float) -> torch.Tensor:
    """Pixels ``(col, row)`` of a ``size x size`` grid with ``(col - x)^2 + (row - y)^2 <= radius^2``
    for any selected point.

    Each point scatters a ``(2 ceil(r) + 2)^2`` stencil around ``floor(x), floor(y)``; the distance
    test is the official float32 arithmetic, so the disks are bit-identical to it.

    Args:
        points: ``[B, Q, N, 2]`` grid coordinates.
        selected: ``[B, Q, N]`` bool: the points drawn.
        size: the grid side.
        radius: the disk radius in grid pixels.

    Returns:
        Bool ``[B, Q, size, size]``.
    """
    b, nq, n = points.shape[:3]
    reach = math.ceil(radius)
    offsets = torch.arange(-reach, reach + 2, device=points.device, dtype=points.dtype)
    cols = points[..., 0:1].floor() + offsets  # [B, Q, N, K]
    rows = points[..., 1:2].floor() + offsets
    dx2, dy2 = (cols - points[..., 0:1]).square(), (rows - points[..., 1:2]).square()
    inside = (dy2[..., :, None] + dx2[..., None, :] <= radius * radius) & selected[..., None, None]
    inside = inside & ((rows >= 0) & (rows < size))[..., :, None] & ((cols >= 0) & (cols < size))[..., None, :]
    flat = (rows[..., :, None] * size + cols[..., None, :]).long()
    flat = torch.where(inside, flat, size * size)  # everything outside lands in one spare slot
    canvas = torch.zeros(b * nq, size * size + 1, dtype=torch.bool, device=points.device)
    index = flat.view(b * nq, -1)
    canvas.scatter_(1, index, torch.ones_like(index, dtype=torch.bool))  # a tensor source traces for ONNX
    return canvas[:, :-1].view(b, nq, size, size)


def box_masks(top_left: torch.Tensor, bottom_right: torch.Tensor, size: int) -> torch.Tensor:
    """Grid pixels inside closed boxes.

    Args:
        top_left: ``[B, Q, 2]`` (x, y) corners.
        bottom_right: ``[B, Q, 2]`` (x, y) corners.
        size: the grid side.

    Returns:
        Bool ``[B, Q, size, size]``.
    """
    grid = torch.arange(size, device=top_left.device, dtype=top_left.dtype)
    rows = (grid >= top_left[..., 1:2]) & (grid <= bottom_right[..., 1:2])
    cols = (grid >= top_left[..., 0:1]) & (grid <= bottom_right[..., 0:1])
    return rows[..., :, None] & cols[..., None, :]


class EarlyFusion(nn.Module):
    """Resizes and normalises images and draws the prompt channels of each query.

    Official behaviour (the defaults): a query whose first label is not 1 is a box from its first
    two points (the box channel is all ones otherwise); label-1 points are drawn as disks; -1 is
    padding and label 0 (a negative click) is ignored, as upstream does. ``negative_click_channel``
    adds a channel with the label-0 disks (and no longer reads a leading negative click as a box
    corner); ``previous_mask_channel`` adds the previous prediction (logits > 0) for iterative
    refinement. Both change the input layout, so they need trained weights of their own.

    Args:
        image_size: S, the side of the square network input.
        click_radius: radius of the click disks in input pixels.
        negative_click_channel: add the channel of label-0 clicks.
        previous_mask_channel: add the channel of the previous prediction.
    """

    def __init__(self, image_size: int, click_radius: float = 5.0, negative_click_channel: bool = False,
                 previous_mask_channel: bool = False) -> None:
        super().__init__()
        self.image_size = image_size
        self.click_radius = click_radius
        self.negative_click_channel = negative_click_channel
        self.previous_mask_channel = previous_mask_channel
        self.register_buffer('pixel_mean', torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)

    @property
    def num_prompt_channels(self) -> int:
        """The prompt channels drawn beside the image's 3."""
        return 2 + self.negative_click_channel + self.previous_mask_channel

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` ``[B, 3, H, W]`` in [0, 1] to the bilinearly resized (aspect ratio not kept),
        normalised ``[B, 3, S, S]`` input."""
        images = F.interpolate(images, (self.image_size, self.image_size), mode='bilinear')
        return (images - self.pixel_mean) / self.pixel_std

    def prompt_channels(self, points: torch.Tensor, labels: torch.Tensor, input_h: int, input_w: int,
                        previous_masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The prompt channels of each query.

        Args:
            points: ``[B, Q, N, 2]`` (x, y) pixels of the ``input_h x input_w`` image.
            labels: ``[B, Q, N]`` labels.
            input_h: the image's height.
            input_w: the image's width.
            previous_masks: ``[B, Q, h, w]`` logits of any size (None: an empty mask).

        Returns:
            Float ``[B, Q, C, S, S]``: box, positive clicks, [negative clicks], [previous mask].

        Raises:
            ValueError: for previous masks of the wrong shape, or given to a model without the channel.
        """
        size = self.image_size
        # x * S / W in this order (not x * (S / W)): the official rounding, so disk edges agree exactly.
        points = torch.stack([torch.where(points[..., i] >= 0, points[..., i] * size / extent, -1.0)
                              for i, extent in enumerate((input_w, input_h))], dim=-1)
        first = labels[..., 0]
        is_box = first != LABEL_POINT
        if self.negative_click_channel:
            is_box &= first != LABEL_NEGATIVE
        corners = points[..., :2, :]
        top_left = torch.where(is_box[..., None], corners.amin(dim=2), points.new_zeros(()))
        bottom_right = torch.where(is_box[..., None], corners.amax(dim=2), points.new_tensor(float(size)))
        channels = [box_masks(top_left, bottom_right, size),
                    click_disks(points, labels == LABEL_POINT, size, self.click_radius)]
        if self.negative_click_channel:
            channels.append(click_disks(points, labels == LABEL_NEGATIVE, size, self.click_radius))
        if self.previous_mask_channel:
            b, nq = labels.shape[:2]
            if previous_masks is None:
                channels.append(torch.zeros(b, nq, size, size, dtype=torch.bool, device=points.device))
            else:
                if previous_masks.ndim != 4 or previous_masks.shape[:2] != (b, nq):
                    raise ValueError(f'previous_masks must be [{b}, {nq}, h, w] logits, '
                                     f'got {tuple(previous_masks.shape)}')
                resized = F.interpolate(previous_masks.flatten(0, 1)[:, None].float(), (size, size),
                                        mode='bilinear')
                channels.append(resized.view(b, nq, size, size) > 0)
        elif previous_masks is not None:
            raise ValueError('previous_masks given to a model built without previous_mask_channel')
        return torch.stack(channels, dim=2).to(points.dtype)

    def forward(self, images: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, input_h: int,
                input_w: int, previous_masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The network input of every query.

        Args:
            images: ``[B, 3, S, S]`` from :meth:`preprocess`.
            points: as :meth:`prompt_channels`.
            labels: as :meth:`prompt_channels`.
            input_h: as :meth:`prompt_channels`.
            input_w: as :meth:`prompt_channels`.
            previous_masks: as :meth:`prompt_channels`.

        Returns:
            ``[B*Q, 3 + C, S, S]``.
        """
        prompts = self.prompt_channels(points, labels, input_h, input_w, previous_masks)
        b, nq = prompts.shape[:2]
        fused = torch.cat([images[:, None].expand(b, nq, -1, -1, -1), prompts.to(images.dtype)], dim=2)
        return fused.flatten(0, 1)
