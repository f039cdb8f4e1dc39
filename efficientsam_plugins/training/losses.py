"""SAM's training loss (Kirillov et al. 2023, appendix A) for EfficientSAM finetuning (pure torch).

Mask loss = 20 * focal + 1 * dice, back-propagated only for the candidate with the lowest one, so
the outputs can specialise on different readings of an ambiguous prompt; the IoU head regresses
(MSE) every candidate's true IoU, the ranking signal at inference.
"""
from typing import Dict, Mapping

import torch
import torch.nn.functional as F
import torchvision


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """torchvision's focal loss averaged over the pixels of each mask: ``[..., H, W]`` -> ``[...]``."""
    return torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma).flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss of each mask: ``[..., H, W]`` -> ``[...]``."""
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    return 1 - (2 * (prob * targets).sum(-1) + eps) / (prob.sum(-1) + targets.sum(-1) + eps)


@torch.no_grad()
def binary_mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits >= 0`` with binary targets: ``[..., H, W]`` -> ``[...]`` (1 when both empty)."""
    pred, gt = (logits >= 0).flatten(-2), targets.flatten(-2) > 0.5
    union = (pred | gt).sum(-1)
    return torch.where(union > 0, (pred & gt).sum(-1) / union.clamp(min=1), 1.0)


def sam_loss(mask_logits: torch.Tensor, iou_predictions: torch.Tensor, targets: torch.Tensor,
             focal_weight: float = 20.0, dice_weight: float = 1.0,
             iou_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """Minimum-over-candidates mask loss plus the IoU-head MSE of ``[Q, M, H, W]`` logits, ``[Q, M]``
    IoU predictions and ``[Q, H, W]`` binary targets; ``mask_iou`` (true IoU of the selected
    candidates) is for logging."""
    if mask_logits.ndim != 4 or targets.shape != (mask_logits.shape[0], *mask_logits.shape[2:]):
        raise ValueError(f'mask_logits {tuple(mask_logits.shape)} and targets {tuple(targets.shape)} '
                         f'must be [Q, M, H, W] and [Q, H, W]')
    targets = targets.to(mask_logits.dtype)[:, None].expand_as(mask_logits)
    focal = sigmoid_focal_loss(mask_logits, targets)
    dice = dice_loss(mask_logits, targets)
    best = (focal_weight * focal + dice_weight * dice).argmin(1, keepdim=True)
    true_iou = binary_mask_iou(mask_logits.detach(), targets)
    return dict(
        loss_focal=focal_weight * focal.gather(1, best).mean(),
        loss_dice=dice_weight * dice.gather(1, best).mean(),
        loss_iou=iou_weight * F.mse_loss(iou_predictions, true_iou.to(iou_predictions.dtype)),
        mask_iou=true_iou.gather(1, best).mean())


def check_finite(values: Mapping[str, torch.Tensor], where: str = '') -> None:
    """Stops training with a :class:`FloatingPointError` naming each of ``values`` that holds NaN or
    infinity (a corrupt target, a diverging run) rather than optimising it and exiting 0."""
    finite = torch.stack([torch.isfinite(value).all() for value in values.values()]).tolist()  # one sync
    bad = [name for name, ok in zip(values, finite) if not ok]
    if bad:
        raise FloatingPointError(f'{" ".join([", ".join(bad), where]).strip()} hold NaN or infinite values: '
                                 f'training stops here (check the targets, e.g. their cache, and the learning rate)')
