"""The "predict" step of the evaluation tools, behind one small interface.

A segmenter gets an image, then batches of prompts for that image, and returns one mask per
prompt. :class:`EfficientSamSegmenter` runs the model; :class:`GroundTruthSegmenter` and
:class:`BoxFillSegmenter` answer from the annotations, so the tools' bookkeeping can be checked
against known results (oracle masks score 1.0; box-filled masks score their exact IoU).
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageInfo, InstanceDataset


@dataclass
class PromptBatch:
    """The prompts of one image: each query has a box and/or positive points.

    keys: one id per query (the annotation id in promptable evaluation, the detection index in
        zero-shot evaluation); model-based segmenters ignore them.
    boxes: ``[Q, 4]`` (x1, y1, x2, y2) pixels; points: ``[Q, N, 2]`` (x, y) pixels, all positive.
    """
    keys: List[int]
    boxes: Optional[np.ndarray] = None
    points: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.boxes is None and self.points is None:
            raise ValueError('a prompt batch needs boxes and/or points')
        for name, value, shape in (('boxes', self.boxes, (4,)), ('points', self.points, (None, 2))):
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float32)
            setattr(self, name, value)
            if value.ndim != 1 + len(shape) or value.shape[0] != len(self.keys) or value.shape[-1] != shape[-1]:
                raise ValueError(f'{name} of shape {value.shape} for {len(self.keys)} queries')

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Segmentation:
    masks: np.ndarray   # bool [Q, H, W]
    scores: np.ndarray  # float [Q]: the model's predicted IoU of each returned mask


class Segmenter(ABC):
    """Interface: :meth:`set_image` once per image, then :meth:`segment` any number of batches."""

    needs_image = True  # False: set_image gets image=None and no file is decoded

    @abstractmethod
    def set_image(self, image: Optional[np.ndarray], info: ImageInfo) -> None:
        """Prepares for the prompts of one image (``image`` is uint8 ``HxWx3`` RGB)."""

    @abstractmethod
    def segment(self, prompts: PromptBatch) -> Segmentation:
        """One bool mask of the image's size per query."""


class EfficientSamSegmenter(Segmenter):
    """EfficientSAM: one image embedding per image; queries decoded in chunks; of the 3 masks of a
    query, the one with the highest predicted IoU (upsampled exactly as the predictor does)."""

    def __init__(self, model, max_queries_per_batch: int = 64) -> None:
        from ..models.efficient_sam import EfficientSamPredictor
        self.predictor = EfficientSamPredictor(model, max_queries_per_batch=max_queries_per_batch)
        self.model = self.predictor.model

    def set_image(self, image: Optional[np.ndarray], info: ImageInfo) -> None:
        self.predictor.set_image(image)

    def _queries(self, prompts: PromptBatch):
        parts, labels = [], []
        if prompts.boxes is not None:
            parts.append(torch.from_numpy(prompts.boxes).view(-1, 2, 2))
            labels.append(torch.tensor([2.0, 3.0]).expand(len(prompts), 2))
        if prompts.points is not None:
            parts.append(torch.from_numpy(prompts.points))
            labels.append(torch.ones(prompts.points.shape[:2]))
        return torch.cat(parts, 1), torch.cat(labels, 1)

    @torch.no_grad()
    def segment(self, prompts: PromptBatch) -> Segmentation:
        if self.predictor.image_embedding is None:
            raise RuntimeError('set_image must be called before segment')
        points, labels = self._queries(prompts)
        limit = self.model.decoder_max_num_input_points
        if points.shape[1] > limit:
            raise ValueError(f'{points.shape[1]} prompt points per query (a box counts as 2) but the '
                             f'model takes at most {limit}')
        h, w = self.predictor.original_size
        device, step = self.predictor.device, self.predictor.max_queries_per_batch
        masks, scores = [], []
        for start in range(0, len(prompts), step):
            logits, iou = self.model.predict_masks(
                self.predictor.image_embedding, points[None, start:start + step].to(device),
                labels[None, start:start + step].to(device), True, h, w)
            logits, iou = logits[0], iou[0]
            best = iou.argmax(1)
            rows = torch.arange(best.numel(), device=best.device)
            chosen = F.interpolate(logits[rows, best][:, None], (h, w), mode='bicubic')[:, 0]
            masks.append((chosen >= self.model.mask_threshold).cpu().numpy())
            scores.append(iou[rows, best].float().cpu().numpy())
        return Segmentation(np.concatenate(masks), np.concatenate(scores))


class GroundTruthSegmenter(Segmenter):
    """Oracle: answers every query with the ground-truth mask of its key (an annotation id)."""

    needs_image = False

    def __init__(self, dataset: InstanceDataset) -> None:
        self.dataset = dataset
        self._masks: Dict[int, np.ndarray] = {}

    def set_image(self, image: Optional[np.ndarray], info: ImageInfo) -> None:
        instances, _ = self.dataset.instances(info.id)
        self._masks = {inst.annotation_id: inst.mask for inst in instances}

    def segment(self, prompts: PromptBatch) -> Segmentation:
        unknown = [k for k in prompts.keys if k not in self._masks]
        if unknown:
            raise KeyError(f'no ground-truth mask for keys {unknown[:5]} in the current image')
        return Segmentation(np.stack([self._masks[k] for k in prompts.keys]), np.ones(len(prompts)))


class BoxFillSegmenter(Segmenter):
    """Answers each box with the filled box (pixels whose centre lies inside it)."""

    needs_image = False

    def set_image(self, image: Optional[np.ndarray], info: ImageInfo) -> None:
        self.shape = (info.height, info.width)

    def segment(self, prompts: PromptBatch) -> Segmentation:
        if prompts.boxes is None:
            raise ValueError('BoxFillSegmenter answers box prompts only')
        h, w = self.shape
        ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
        masks = np.stack([(xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2) for x1, y1, x2, y2 in prompts.boxes])
        return Segmentation(masks, np.ones(len(prompts)))


def parse_model_config(spec: str):
    """``ti`` / ``s``, a JSON object of architecture overrides, or the path of a JSON file."""
    import json
    import os
    text = spec.strip()
    if text.startswith('{'):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f'model config {spec!r} is not valid JSON: {err}') from err
    if text.endswith('.json'):
        if not os.path.isfile(text):
            raise FileNotFoundError(f'model config file not found: {text}')
        try:
            with open(text, encoding='utf-8') as f:
                config = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f'model config file {text} is not valid JSON: {err}') from err
        if not isinstance(config, dict):
            raise ValueError(f'model config file {text} must hold a JSON object of architecture '
                             f'settings, got a {type(config).__name__}')
        return config
    return text


def resolve_checkpoint(spec: Optional[str]) -> Optional[str]:
    """A local checkpoint path from a path or a model-zoo name (``efficientsam_ti``, ...)."""
    import os
    if spec is None or os.path.exists(spec) or os.sep in spec or spec.endswith(('.pt', '.pth')):
        return spec
    from ..zoo import get_checkpoint
    return get_checkpoint(spec)


def load_efficient_sam(config: str = 'ti', checkpoint: Optional[str] = None, device: str = 'cpu'):
    """EfficientSAM in eval mode from CLI-style config and checkpoint strings."""
    from ..models.efficient_sam import build_efficient_sam
    return build_efficient_sam(parse_model_config(config), resolve_checkpoint(checkpoint)).to(device)
