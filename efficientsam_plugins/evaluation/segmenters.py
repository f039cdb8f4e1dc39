"""The "predict" step of the evaluation tools: an image, then batches of prompts, one mask each.

:class:`PredictorSegmenter` runs any predictor of the common interface; :class:`GroundTruthSegmenter`
and :class:`BoxFillSegmenter` answer from the annotations, so the tools' bookkeeping can be checked
against known results (oracle masks score 1.0; box-filled masks score their exact IoU).
"""
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..models.predictor import Predictor
from .dataset import ImageInfo, InstanceDataset, read_json


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


class EfficientSamSegmenter(PredictorSegmenter):
    """:class:`PredictorSegmenter` of an EfficientSAM model."""

    def __init__(self, model, max_queries_per_batch: int = 64) -> None:
        from ..models.efficient_sam import EfficientSamPredictor
        super().__init__(EfficientSamPredictor(model, max_queries_per_batch))


class SqueezeSamSegmenter(PredictorSegmenter):
    """:class:`PredictorSegmenter` of a SqueezeSAM model (or its int8 form); every query is a whole
    network pass, and activations grow with ``max_queries_per_batch`` (about 0.13 GB a query at 512x512)."""

    def __init__(self, model, max_queries_per_batch: int = 8) -> None:
        from ..models.squeeze_sam import SqueezeSamPredictor
        super().__init__(SqueezeSamPredictor(model, max_queries_per_batch))


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


def parse_model_config(spec: str):
    """``ti`` / ``s``, a JSON object of architecture overrides, the path of a JSON file, or a
    finetuning config ``.py`` (its ``model.model_config``), for command-line tools."""
    text = spec.strip()
    if text.endswith(('.json', '.py')) and not os.path.isfile(text):
        raise FileNotFoundError(f'model config file not found: {text}')
    if text.endswith('.py'):
        from mmengine.config import Config
        return Config.fromfile(text).model.get('model_config', 'ti')
    if not text.endswith('.json'):
        try:
            return json.loads(text) if text.startswith('{') else text
        except json.JSONDecodeError as err:
            raise ValueError(f'model config {text} is not valid JSON: {err}') from err
    config = read_json(text, 'model config')
    if not isinstance(config, dict):
        raise ValueError(f'model config file {text} must hold a JSON object of architecture '
                         f'settings, got a {type(config).__name__}')
    return config


def load_efficient_sam(config: str = 'ti', checkpoint: Optional[str] = None, device: str = 'cpu'):
    """EfficientSAM in eval mode from CLI-style config and checkpoint (path, URL or zoo name) strings."""
    from ..models.efficient_sam import build_efficient_sam
    return build_efficient_sam(parse_model_config(config), checkpoint).to(device)


def load_squeeze_sam(config: Optional[str] = None, checkpoint: Optional[str] = None, device: str = 'cpu'):
    """SqueezeSAM in eval mode from CLI-style strings: ``config`` ``base`` (default) or a JSON object /
    file of the official constructor's arguments; a zoo name of a SqueezeSAM entry as ``checkpoint``
    brings its own architecture (then ``config`` must be left out)."""
    from ..models.squeeze_sam import SqueezeSamPredictor, build_squeeze_sam
    from ..zoo import list_entries
    name = checkpoint and checkpoint.removeprefix('zoo://')
    if name in {e.name for e in list_entries() if e.arch and e.arch.family == 'squeezesam'}:
        if config is not None:
            raise ValueError(f'zoo entry {checkpoint} defines its architecture; leave out the model config')
        return SqueezeSamPredictor.from_pretrained(name, device=device).model
    return build_squeeze_sam(parse_model_config(config or 'base'), checkpoint).to(device)
