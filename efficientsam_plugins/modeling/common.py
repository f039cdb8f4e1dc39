"""What every model of :mod:`efficientsam_plugins.modeling` shares: the prompt label convention,
ImageNet pixel statistics, the prompt-shape check and the architecture-config check."""
from typing import Any, Dict, Iterable, Mapping, Tuple

import torch

# Prompt labels (SAM's convention): 1 point, 0 negative point, 2/3 box corners, -1 padding.
LABEL_PADDING, LABEL_NEGATIVE, LABEL_POINT, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3
# The normalisation both EfficientSAM and SqueezeSAM apply to RGB images in [0, 1].
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def check_prompts(images: torch.Tensor, batched_points: torch.Tensor, batched_point_labels: torch.Tensor) -> None:
    """Checks the shapes the models' ``predict_masks`` take.

    Args:
        images: images or image embeddings, ``[B, ...]``.
        batched_points: ``[B, Q, N, 2]`` (x, y) coordinates.
        batched_point_labels: ``[B, Q, N]`` labels.

    Raises:
        ValueError: naming the argument whose shape is wrong.
    """
    if batched_points.ndim != 4 or batched_points.shape[-1] != 2:
        raise ValueError(f'batched_points must be [B, Q, N, 2], got {tuple(batched_points.shape)}')
    if batched_point_labels.shape != batched_points.shape[:3]:
        raise ValueError(f'batched_point_labels must be {tuple(batched_points.shape[:3])}, '
                         f'got {tuple(batched_point_labels.shape)}')
    if images.shape[0] != batched_points.shape[0]:
        raise ValueError(f'{images.shape[0]} images for prompts of {batched_points.shape[0]} images')


def merge_config(model: str, config: Mapping[str, Any], defaults: Mapping[str, Any],
                 ignored: Iterable[str] = ()) -> Dict[str, Any]:
    """``defaults`` overridden by ``config``, every value checked against its default's kind.

    Args:
        model: the model's name for error messages (``'EfficientSAM'``).
        config: overrides; keys must be keys of ``defaults`` (or of ``ignored``, which are dropped).
        defaults: the full architecture config; a bool default takes a bool, an int default a
            positive int, a float default a positive number, a list default a non-empty list of
            positive ints.
        ignored: keys accepted and dropped (e.g. a seed recorded beside the architecture).

    Raises:
        ValueError: naming the unknown key or the key with a value of the wrong kind, rather than a
            TypeError deep inside a constructor.
    """
    unknown = set(config) - set(defaults) - set(ignored)
    if unknown:
        raise ValueError(f'unknown {model} config keys {sorted(unknown)}; known keys: {sorted(defaults)}')
    merged = {**defaults, **{k: v for k, v in config.items() if k in defaults}}
    for key, value in merged.items():
        default = defaults[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f'{model} config {key} must be true or false, got {value!r}')
            continue
        kinds = (int, float) if isinstance(default, float) else int
        items = [value] if not isinstance(default, list) else list(value) if isinstance(value, (list, tuple)) else []
        if not (items and all(isinstance(v, kinds) and not isinstance(v, bool) and v > 0 for v in items)):
            what = ('a non-empty list of positive integers' if isinstance(default, list) else
                    'a positive number' if isinstance(default, float) else 'a positive integer')
            raise ValueError(f'{model} config {key} must be {what}, got {value!r}')
    return merged


def select_best(logits: torch.Tensor, iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each query's candidate with the highest predicted IoU.

    Args:
        logits: ``[Q, M, ...]`` candidates (mask logits of any trailing shape).
        iou: ``[Q, M]`` predicted IoU of each candidate.

    Returns:
        ``(logits [Q, 1, ...], iou [Q, 1])``.
    """
    best = iou.argmax(1, keepdim=True)
    index = best.view(*best.shape, *([1] * (logits.ndim - 2)))
    return torch.take_along_dim(logits, index, 1), iou.gather(1, best)
