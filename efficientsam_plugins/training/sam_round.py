"""SAM's training round as a plain function (pure torch): prompts sampled from the ground truth,
``num_iterative_clicks`` extra rounds each adding a click in the error region (negative on false
positives with ``negative_clicks``), the best-of-3 loss of every round averaged. The model enters
only through ``decode`` (:func:`per_image` makes one from a function that decodes one image's
queries), so EfficientSAM (image embedded once, :func:`efficient_sam_decoder`) and SqueezeSAM (whole
network per query) share it.

SqueezeSAM's training adds four optional inputs: ``click_masks`` (the first click on one part of a
merged whole-object target), ``extra_prompts`` (outlier clicks appended to the first prompt),
``feed_previous_masks`` (each round sees the previous round's chosen logits) and ``teacher`` (a
frozen model's masks for the same prompts as targets, alone or mixed with the ground truth).
"""
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..modeling.common import select_best
from ..modeling.efficient_sam import EfficientSam
from .losses import check_finite, sam_loss
from .prompt_sampling import sample_error_clicks, sample_prompts

# (per-image points [Q_b, N, 2] in input pixels, per-image labels [Q_b, N]) ->
# (multimask logits [sum Q_b, M, h, w], iou predictions [sum Q_b, M]), images concatenated in order.
# With feed_previous_masks a third argument: the previous round's chosen logits [sum Q_b, h, w] or None.
Decoder = Callable[..., Tuple[torch.Tensor, torch.Tensor]]
# (per-image points, per-image labels) -> bool target masks [sum Q_b, h, w] of a frozen teacher.
TeacherTargets = Callable[[List[torch.Tensor], List[torch.Tensor]], torch.Tensor]

LOSS_WEIGHTS = dict(focal=20.0, dice=1.0, iou=1.0)  # SAM's focal : dice = 20 : 1, plus the IoU MSE


def per_image(decode_one: Callable[..., Tuple[torch.Tensor, torch.Tensor]]) -> Decoder:
    """A :data:`Decoder` from ``decode_one(b, points [Q, N, 2], labels [Q, N], previous [Q, h, w] or
    None) -> (logits [Q, M, h, w], iou [Q, M])``, which decodes image ``b``'s queries."""
    def decode(points: List[torch.Tensor], labels: List[torch.Tensor], previous: Optional[torch.Tensor] = None):
        chunks = [None] * len(points) if previous is None else previous.split([len(p) for p in points])
        logits, iou = zip(*(decode_one(b, *query) for b, query in enumerate(zip(points, labels, chunks))))
        return torch.cat(logits), torch.cat(iou)
    return decode


def decode_efficient_sam(model: EfficientSam, embedding: torch.Tensor, points: torch.Tensor, labels: torch.Tensor,
                         img_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image's queries (``points [Q, N, 2]`` in ``img_size`` pixels, ``labels [Q, N]``) against its
    ``embedding [1, C, h, w]``: all candidates' logits ``[Q, M, h', w']`` and IoUs ``[Q, M]``."""
    logits, iou = model.predict_masks(embedding, points[None], labels[None], True, img_size, img_size)
    return logits[0], iou[0]


def efficient_sam_decoder(model: EfficientSam, images: torch.Tensor) -> Decoder:
    """``decode`` of :func:`training_round` for EfficientSAM: ``images`` ``[B, 3, S, S]`` at the
    model's input size are embedded once; each image's queries are decoded against its embedding."""
    embeddings = model.get_image_embeddings(images)
    return per_image(lambda b, points, labels, _: decode_efficient_sam(model, embeddings[b:b + 1], points, labels,
                                                                       model.img_size))


def training_round(decode: Decoder, masks: Sequence[torch.Tensor], img_size: int,
                   box_probability: float = 0.5, num_iterative_clicks: int = 0,
                   loss_weights: Mapping[str, float] = LOSS_WEIGHTS, mask_threshold: float = 0.0,
                   generator: Optional[torch.Generator] = None,
                   negative_clicks: bool = False, click_masks: Optional[Sequence[torch.Tensor]] = None,
                   extra_prompts: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
                   feed_previous_masks: bool = False, teacher: Optional[TeacherTargets] = None,
                   teacher_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """The :func:`sam_loss` terms of one training step, averaged over its rounds; ``masks`` are per
    image bool ``[Q_b, h, w]`` at the decoder's output resolution, prompts in ``img_size`` pixels.

    ``click_masks`` (per image, like ``masks``) is where the first points are sampled (boxes stay
    the targets'); ``extra_prompts`` per image ``(points [Q_b, K, 2], labels [Q_b, K])`` join the
    first prompt; with ``teacher`` the mask terms are ``(1 - teacher_weight)`` x ground truth +
    ``teacher_weight`` x the teacher's masks for the round's prompts (``mask_iou`` stays the
    ground truth's; iterative clicks always come from the ground truth's error region)."""
    if not 0.0 <= teacher_weight <= 1.0:
        raise ValueError(f'teacher_weight must be in [0, 1], got {teacher_weight}')
    click_masks = masks if click_masks is None else click_masks
    points, labels = map(list, zip(*(sample_prompts(m, img_size, box_probability, generator, c)
                                     for m, c in zip(masks, click_masks))))
    if extra_prompts is not None:
        for b, (extra_points, extra_labels) in enumerate(extra_prompts):
            points[b] = torch.cat([points[b], extra_points.to(points[b])], 1)
            labels[b] = torch.cat([labels[b], extra_labels.to(labels[b])], 1)
    targets = torch.cat(list(masks))
    totals: Dict[str, torch.Tensor] = {}
    rounds = num_iterative_clicks + 1
    previous: Optional[torch.Tensor] = None
    for round_ in range(rounds):
        logits, iou = decode(points, labels, previous) if feed_previous_masks else decode(points, labels)
        if logits.shape[-2:] != targets.shape[-2:]:
            raise ValueError(f'ground-truth masks are {tuple(targets.shape[-2:])} but the decoder '
                             f'outputs {tuple(logits.shape[-2:])}: set the dataset\'s mask_size to '
                             f'{logits.shape[-1]}')
        losses = sam_loss(logits, iou, targets, loss_weights['focal'], loss_weights['dice'], loss_weights['iou'])
        if teacher is not None:
            with torch.no_grad():
                teacher_targets = teacher(points, labels)
            distilled = sam_loss(logits, iou, teacher_targets, loss_weights['focal'], loss_weights['dice'],
                                 loss_weights['iou'])
            losses = {k: v if k == 'mask_iou' else (1 - teacher_weight) * v + teacher_weight * distilled[k]
                      for k, v in losses.items()}
        for key, value in losses.items():
            totals[key] = totals.get(key, 0) + value / rounds
        if round_ + 1 < rounds:
            previous = select_best(logits.detach(), iou.detach())[0][:, 0]
            predictions = previous >= mask_threshold
            for b, predicted in enumerate(predictions.split([len(m) for m in masks])):
                new_points, new_labels = sample_error_clicks(predicted, masks[b], img_size, generator,
                                                             negative_clicks)
                points[b] = torch.cat([points[b], new_points], 1)
                labels[b] = torch.cat([labels[b], new_labels], 1)
    check_finite(totals, 'of this training step')
    return totals
