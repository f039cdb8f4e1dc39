"""The "predict" step of the evaluation tools: an image, then batches of prompts, one mask each.

:class:`PredictorSegmenter` runs any predictor of the common interface; :class:`GroundTruthSegmenter`
and :class:`BoxFillSegmenter` answer from the annotations, so the tools' bookkeeping can be checked
against known results (oracle masks score 1.0; box-filled masks score their exact IoU).
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..predictor import Predictor
from .dataset import ImageInfo, InstanceDataset


@dataclass
class PromptBatch:
    """The prompts of one image, one query per key (the annotation id in promptable evaluation, the
    detection index in zero-shot evaluation; model-based segmenters ignore keys): boxes ``[Q, 4]``
    (x1, y1, x2, y2) and/or points ``[Q, N, 2]`` (x, y), in pixels, with ``labels`` ``[Q, N]`` (1
    positive, 0 negative: only for a segmenter that ``supports_negative_points``; None: all positive)."""
    keys: List[int]
    boxes: Optional[np.ndarray] = None
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Segmentation:
    masks: np.ndarray   # bool [Q, H, W]
    scores: np.ndarray  # float [Q]: the model's predicted IoU of each returned mask


class Segmenter(ABC):
    """Interface: :meth:`set_image` once per image, then :meth:`segment` any number of batches."""

    needs_image = True  # False: set_image gets image=None and no file is decoded
    supports_negative_points = False  # True: PromptBatch.labels may hold negative clicks (0)

    @abstractmethod
    def set_image(self, image: Optional[np.ndarray], info: ImageInfo) -> None:
        """Prepares for the prompts of one image (``image`` is uint8 ``HxWx3`` RGB)."""

    @abstractmethod
    def segment(self, prompts: PromptBatch) -> Segmentation:
        """One bool mask of the image's size per query."""


class PredictorSegmenter(Segmenter):
    """A :class:`~efficientsam_plugins.models.predictor.Predictor`: of the candidate masks of a
    query, the one with the highest predicted IoU (only it is upsampled)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def supports_negative_points(self) -> bool:
        return self.predictor.supports_negative_points

    def set_image(self, image: Optional[np.ndarray], info: ImageInfo) -> None:
        self.predictor.set_image(image)

    def segment(self, prompts: PromptBatch) -> Segmentation:
        masks, scores, _ = self.predictor.predict_torch(points=prompts.points, point_labels=prompts.labels,
                                                        boxes=prompts.boxes, best_only=True)
        return Segmentation(masks[:, 0].cpu().numpy(), scores[:, 0].float().cpu().numpy())


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
