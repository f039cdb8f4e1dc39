"""The one predictor interface (:class:`Predictor`) behind which every model runs.

Prompts are parsed and validated here, once, so every backend (EfficientSAM, SqueezeSAM, an
onnxruntime session) refuses bad input with the same message; queries are chunked and upsampled
here. What a backend keeps between ``_set_image`` and ``_decode`` is its own (SqueezeSAM fuses the
prompts into its input), so the interface exposes no image embedding.
"""
from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .modeling.common import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_NEGATIVE, LABEL_POINT, select_best
from .modeling.efficient_sam import EfficientSam
from .modeling.squeeze_sam import SqueezeSam

ArrayLike = Union[np.ndarray, torch.Tensor, list, tuple]

# Compute precisions a predictor runs its model in; outputs are float32 whichever is chosen.
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def image_to_tensor(image) -> torch.Tensor:
    """An image as the models take it.

    Args:
        image: an ``HxWx3`` uint8 RGB array, a PIL image, a uint8 ``[H, W, 3]`` / ``[3, H, W]`` tensor
            or a float ``[3, H, W]`` tensor in [0, 1].

    Returns:
        Float ``[3, H, W]`` RGB in [0, 1].

    Raises:
        ValueError: naming what is wrong with the image (type, dtype, shape, range, NaN).
    """
    if hasattr(image, 'convert') and hasattr(image, 'size'):  # PIL.Image without importing PIL
        image = np.asarray(image.convert('RGB'))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f'numpy images must be uint8 HxWx3, got dtype {image.dtype}')
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'numpy images must be HxWx3 (RGB), got shape {image.shape}')
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    if not isinstance(image, torch.Tensor):
        raise ValueError(f'unsupported image type {type(image).__name__}; use a uint8 HxWx3 '
                         f'array, a PIL image or a tensor')
    if image.ndim != 3:
        raise ValueError(f'image tensors must have 3 dims, got shape {tuple(image.shape)}')
    if image.dtype == torch.uint8:
        image = image.permute(2, 0, 1) if image.shape[-1] == 3 else image
        if image.shape[0] != 3:
            raise ValueError(f'uint8 image tensors must be [H, W, 3] or [3, H, W], got {tuple(image.shape)}')
        return image.float() / 255
    if not image.is_floating_point():
        raise ValueError(f'image tensors must be uint8 or float, got {image.dtype}')
    if image.shape[0] != 3:
        raise ValueError(f'float image tensors must be [3, H, W] in [0, 1], got {tuple(image.shape)}')
    finite = torch.isfinite(image)
    if not finite.all():
        raise ValueError(f'float image tensors must be finite: {int((~finite).sum())} of {image.numel()} '
                         f'values are NaN or infinite')
    if image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError('float image tensors must hold values in [0, 1]')
    return image.float()


def as_prompt_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    """A prompt argument as a float tensor.

    Args:
        value: an array, tensor or (nested) list of numbers.
        name: the argument's name for error messages.

    Returns:
        The values as a float tensor.

    Raises:
        ValueError: naming ``name`` where numpy or torch would raise errors that do not say which
            argument was wrong (strings, ragged lists, objects, NaN).
    """
    if not isinstance(value, torch.Tensor):
        try:
            array = np.asarray(value)
        except ValueError as err:
            raise ValueError(f'{name} must be a rectangular array of numbers, got {value!r:.100}') from err
        if array.dtype.kind not in 'iuf':
            raise ValueError(f'{name} must hold numbers, got {value!r:.100} (dtype {array.dtype})')
        value = torch.from_numpy(array.astype(np.float64))
    if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise ValueError(f'{name} must be numeric, got {value.dtype}')
    if not torch.isfinite(value.float()).all():
        raise ValueError(f'{name} contains NaN or infinite values')
    return value.float()


class Predictor(ABC):
    """SAM-style predictor: :meth:`set_image` once, then :meth:`predict` any number of prompts.

    Backends implement :meth:`_set_image` and :meth:`_decode`, and may set the class attributes
    (``device``: where :meth:`_decode`'s inputs go; ``supports_negative_points``: whether the model
    was built with a negative-click input, so label 0 is accepted) or override :meth:`upsample`.

    Args:
        max_queries_per_batch: queries decoded in one backend call; a larger :meth:`predict` is
            decoded in chunks of this many.
        precision: compute precision, ``'fp32'``, ``'bf16'`` or ``'fp16'`` (outputs are float32).

    Raises:
        ValueError: for an unknown precision or a batch size that is not a positive int.
    """

    model_name = 'model'
    supports_negative_points = False
    max_points_per_query: Optional[int] = None
    mask_threshold = 0.0
    device = torch.device('cpu')

    def __init__(self, max_queries_per_batch: int = 64, precision: str = 'fp32') -> None:
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
        if type(max_queries_per_batch) is not int or max_queries_per_batch < 1:
            raise ValueError(f'max_queries_per_batch must be a positive int, got {max_queries_per_batch!r}')
        self.max_queries_per_batch = max_queries_per_batch
        self.precision = precision
        self.original_size: Optional[Tuple[int, int]] = None

    def _autocast(self):
        """The model's compute precision: fp32 as is (the parity reference), bf16/fp16 under
        ``torch.autocast`` (on CPUs with AVX-512 BF16/AMX, bf16 runs the matmuls at about twice the speed)."""
        dtype = PRECISIONS[self.precision]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @abstractmethod
    def _set_image(self, image: torch.Tensor) -> None:
        """Prepares float ``[3, H, W]`` RGB in [0, 1] (on the CPU) for the queries that follow."""

    @abstractmethod
    def _decode(self, points: torch.Tensor, labels: torch.Tensor,
                multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Validated ``[Q, N, 2]`` (x, y) pixels of the original image and ``[Q, N]`` labels (1 point,
        2/3 box corners) on :attr:`device` to ``(low-res logits [Q, M, h, w], iou [Q, M])``."""

    def upsample(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits at the original image size (bicubic, as the official models).

        Args:
            low_res_logits: ``[Q, M, h, w]`` logits from :meth:`decode_low_res`.

        Returns:
            ``[Q, M, H, W]`` logits at the size of the image of :meth:`set_image`.
        """
        return F.interpolate(low_res_logits, self.original_size, mode='bicubic')

    def reset_image(self) -> None:
        """Forgets the image of :meth:`set_image` (and what the backend kept of it)."""
        self.original_size = None

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Prepares an image for the queries that follow (EfficientSAM embeds it here).

        Args:
            image: anything :func:`image_to_tensor` takes (uint8 ``HxWx3`` RGB, a PIL image, a tensor).

        Raises:
            ValueError: for an image :func:`image_to_tensor` refuses, or an empty one.
        """
        tensor = image_to_tensor(image)
        if 0 in tensor.shape:
            raise ValueError(f'image is empty: shape {tuple(tensor.shape)}')
        with self._autocast():
            self._set_image(tensor)
        self.original_size = (tensor.shape[1], tensor.shape[2])

    def prepare_prompts(self, points=None, point_labels=None, boxes=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The prompts of :meth:`predict`, validated, as the point prompts the models take.

        Callers that batch their own queries (the automatic mask generator) use it with
        :meth:`decode_low_res`.

        Args:
            points: as :meth:`predict`.
            point_labels: as :meth:`predict`.
            boxes: as :meth:`predict`.

        Returns:
            ``(points [Q, N, 2], labels [Q, N])`` in original-image pixels, a query's box corners
            (labels 2 and 3) before its points.

        Raises:
            ValueError: for a malformed prompt, one outside the image, labels the model does not know,
                or more points per query than the model takes.
        """
        if points is None and point_labels is not None:
            raise ValueError('point_labels given without points')
        parts = []  # (coordinates [Q, n, 2], labels [Q, n])
        if boxes is not None:
            bxs = as_prompt_tensor(boxes, 'boxes')
            bxs = bxs[None] if bxs.ndim == 1 else bxs
            if bxs.ndim != 2 or bxs.shape[-1] != 4 or bxs.shape[0] == 0:
                raise ValueError(f'boxes must be [4] or [Q, 4] (x1, y1, x2, y2), got {tuple(bxs.shape)}')
            if ((bxs[:, 2] < bxs[:, 0]) | (bxs[:, 3] < bxs[:, 1])).any():
                raise ValueError('boxes must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1')
            corners = self._check_inside(bxs.view(-1, 2, 2), 'boxes')
            corner_labels = torch.tensor([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], dtype=torch.float)
            parts.append((corners, corner_labels.expand(len(corners), 2)))
        if points is not None:
            pts = as_prompt_tensor(points, 'points')
            pts = pts[None] if pts.ndim == 2 else pts
            if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
                raise ValueError(f'points must be [N, 2] or [Q, N, 2] with N >= 1, got {tuple(pts.shape)}')
            lbl = torch.full(pts.shape[:2], float(LABEL_POINT))
            if point_labels is not None:
                lbl = as_prompt_tensor(point_labels, 'point_labels')
                lbl = lbl[None] if lbl.ndim == 1 else lbl
                if lbl.shape != pts.shape[:2]:
                    raise ValueError(f'point_labels must be {tuple(pts.shape[:2])} to match points, '
                                     f'got {tuple(lbl.shape)}')
                allowed = {float(LABEL_POINT)} | ({float(LABEL_NEGATIVE)} if self.supports_negative_points else set())
                bad = sorted(set(lbl.unique().tolist()) - allowed)
                if bad:
                    known = ('positive (1) and negative (0) points' if self.supports_negative_points else
                             'only positive points (label 1); negative points (0) need a model built with '
                             'the negative-click input')
                    raise ValueError(f'point labels {bad} are not supported: this {self.model_name} knows '
                                     f'{known}; boxes go in `boxes`')
            if boxes is not None and len(pts) != len(corners):
                raise ValueError(f'{len(corners)} boxes but {len(pts)} point sets: give one point set per box')
            parts.append((self._check_inside(pts, 'points'), lbl))
        if not parts:
            raise ValueError('no prompt given: pass points and/or boxes')
        prompts, labels = (torch.cat(tensors, dim=1) for tensors in zip(*parts))
        limit = self.max_points_per_query
        if limit is not None and prompts.shape[1] > limit:
            raise ValueError(f'{prompts.shape[1]} prompt points per query (a box counts as 2) but the '
                             f'model takes at most {limit}; nothing is truncated, split the prompt')
        return prompts, labels

    def _check_inside(self, coords: torch.Tensor, name: str) -> torch.Tensor:
        h, w = self.original_size
        outside = (coords[..., 0] < 0) | (coords[..., 0] > w) | (coords[..., 1] < 0) | (coords[..., 1] > h)
        if outside.any():
            raise ValueError(f'{name} has {int(outside.sum())} coordinates outside the {w}x{h} image '
                             f'(x in [0, {w}], y in [0, {h}]), e.g. {coords[outside][0].tolist()}')
        return coords

    @torch.no_grad()
    def decode_low_res(self, prompts: torch.Tensor, labels: torch.Tensor,
                       multimask_output: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decodes prepared prompts in one backend call (the caller bounds Q), upsampling nothing.

        Args:
            prompts: ``[Q, N, 2]`` points from :meth:`prepare_prompts`.
            labels: ``[Q, N]`` labels from :meth:`prepare_prompts`.
            multimask_output: three candidates per query (True) or one.

        Returns:
            Float32 ``(low-res logits [Q, M, h, w], predicted IoU [Q, M])``.

        Raises:
            RuntimeError: before :meth:`set_image`.
        """
        if self.original_size is None:
            raise RuntimeError('call set_image(image) before predict()')
        with self._autocast():
            logits, iou = self._decode(prompts.to(self.device), labels.to(self.device), multimask_output)
        return logits.float(), iou.float()

    @torch.no_grad()
    def predict_torch(self, points: Optional[ArrayLike] = None, point_labels: Optional[ArrayLike] = None,
                      boxes: Optional[ArrayLike] = None, multimask_output: bool = True,
                      return_logits: bool = False,
                      best_only: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`predict`, returning tensors on :attr:`device`.

        Args:
            points: as :meth:`predict`.
            point_labels: as :meth:`predict`.
            boxes: as :meth:`predict`.
            multimask_output: as :meth:`predict`.
            return_logits: as :meth:`predict`.
            best_only: as :meth:`predict`.

        Returns:
            ``(masks, iou_predictions, low_res_logits)`` as :meth:`predict`, as tensors.
        """
        if self.original_size is None:
            raise RuntimeError('call set_image(image) before predict()')
        prompts, labels = self.prepare_prompts(points, point_labels, boxes)
        count = prompts.shape[0]
        masks = scores = low_res = None  # allocated once the first chunk gives the shapes
        for start in range(0, count, self.max_queries_per_batch):
            chunk = slice(start, start + self.max_queries_per_batch)
            logits, iou = self.decode_low_res(prompts[chunk], labels[chunk], multimask_output)
            if best_only:
                logits, iou = select_best(logits, iou)
            full = self.upsample(logits)
            if masks is None:  # each chunk is written into its rows: no list of chunks and no second copy
                masks = full.new_empty((count, *full.shape[1:]), dtype=full.dtype if return_logits else torch.bool)
                scores, low_res = iou.new_empty((count, *iou.shape[1:])), logits.new_empty((count, *logits.shape[1:]))
            if return_logits:
                masks[chunk] = full
            else:
                torch.ge(full, self.mask_threshold, out=masks[chunk])
            scores[chunk], low_res[chunk] = iou, logits
            del full
        return masks, scores, low_res

    def predict(self, points: Optional[ArrayLike] = None, point_labels: Optional[ArrayLike] = None,
                boxes: Optional[ArrayLike] = None, multimask_output: bool = True, return_logits: bool = False,
                best_only: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for Q queries on the current image.

        Memory: the outputs are allocated once and each chunk of ``max_queries_per_batch`` queries
        is written into them, so the peak is the outputs (Q x M x H x W bytes of masks, 4x that with
        ``return_logits``, plus Q x M x 256 x 256 x 4 bytes of low-res logits) plus one chunk's float
        upsampling; 2,000 boxes on a 1072x603 image hold 3.6 GiB of masks, 1.2 GiB with ``best_only``.

        Args:
            points: ``[N, 2]`` (one query) or ``[Q, N, 2]`` (x, y) pixels of the original image; with
                ``boxes`` too, query ``i`` is box ``i`` plus point set ``i`` (a box counts as 2 of
                ``max_points_per_query``).
            point_labels: ``[N]`` / ``[Q, N]``: 1 positive, 0 negative (only where
                ``supports_negative_points``); None: all positive.
            boxes: ``[4]`` or ``[Q, 4]`` (x1, y1, x2, y2) pixels of the original image.
            multimask_output: three candidate masks per query (True) or one.
            return_logits: float logits instead of bool masks.
            best_only: keep (and upsample) only the candidate with the highest predicted IoU: the
                mode for large batches, as the output is a third of the size.

        Returns:
            ``(masks, iou_predictions, low_res_logits)`` as numpy arrays: bool masks ``[Q, M, H, W]``
            at the original resolution (logits with ``return_logits``), predicted IoU ``[Q, M]`` and
            low-res logits ``[Q, M, h, w]``; M = 3, or 1 without ``multimask_output`` or with
            ``best_only``.

        Raises:
            ValueError: for a prompt :meth:`prepare_prompts` refuses.
            RuntimeError: before :meth:`set_image`.
        """
        masks, scores, low_res = self.predict_torch(points, point_labels, boxes, multimask_output,
                                                    return_logits, best_only)
        masks = masks.float() if return_logits else masks
        return masks.cpu().numpy(), scores.float().cpu().numpy(), low_res.float().cpu().numpy()


class EfficientSamPredictor(Predictor):
    """The predictor of an EfficientSAM model.

    Embeds the image once in :meth:`set_image`; all queries of a :meth:`predict` call share that
    embedding (it is never copied per query) and are decoded in chunks of ``max_queries_per_batch``.
    Negative clicks (label 0) are accepted when the model was built with ``negative_points``.

    Args:
        model: the :class:`~efficientsam_plugins.modeling.efficient_sam.EfficientSam` (put in eval mode).
        max_queries_per_batch: queries per decoder call.
        precision: compute precision, ``'fp32'``, ``'bf16'`` or ``'fp16'``.
    """

    model_name = 'EfficientSAM'

    def __init__(self, model: EfficientSam, max_queries_per_batch: int = 64,
                 precision: str = 'fp32') -> None:
        super().__init__(max_queries_per_batch, precision)
        self.model = model.eval()
        self.mask_threshold = model.mask_threshold
        self.max_points_per_query = model.decoder_max_num_input_points
        self.supports_negative_points = model.prompt_encoder.supports_negative_points
        self.image_embedding: Optional[torch.Tensor] = None

    @property
    def device(self) -> torch.device:
        """The device of the model."""
        return self.model.pixel_mean.device

    def reset_image(self) -> None:
        """Forgets the image and its embedding."""
        super().reset_image()
        self.image_embedding = None

    def _set_image(self, image: torch.Tensor) -> None:
        self.image_embedding = self.model.get_image_embeddings(image[None].to(self.device))

    def _decode(self, points: torch.Tensor, labels: torch.Tensor, multimask_output: bool):
        h, w = self.original_size
        logits, iou = self.model.predict_masks(self.image_embedding, points[None], labels[None],
                                               multimask_output, h, w)
        return logits[0], iou[0]


class SqueezeSamPredictor(Predictor):
    """The predictor of a SqueezeSAM model (or its int8 form).

    Keeps the resized, normalised image from :meth:`set_image`; every query runs the whole
    network on its own fused input, ``max_queries_per_batch`` queries at a time (activation memory
    grows with that number: about 0.13 GB per query at 512x512, measured on CPU).

    ``multimask_output=False`` returns the candidate with the highest predicted IoU: SqueezeSAM
    drops SAM's single-mask token. Label-0 points are accepted only when the model was built with
    ``negative_click_channel``.

    Args:
        model: the :class:`~efficientsam_plugins.modeling.squeeze_sam.SqueezeSam` (put in eval mode).
        max_queries_per_batch: queries per network call.
        precision: compute precision, ``'fp32'``, ``'bf16'`` or ``'fp16'``.
    """

    model_name = 'SqueezeSAM'

    def __init__(self, model: SqueezeSam, max_queries_per_batch: int = 8,
                 precision: str = 'fp32') -> None:
        super().__init__(max_queries_per_batch, precision)
        self.model = model.eval()
        self.mask_threshold = model.mask_threshold
        self.supports_negative_points = model.negative_click_channel
        self.image: Optional[torch.Tensor] = None

    @property
    def device(self) -> torch.device:
        """The device of the model."""
        return self.model.early_fusion.pixel_mean.device

    def reset_image(self) -> None:
        """Forgets the image and its resized copy."""
        super().reset_image()
        self.image = None

    def _set_image(self, image: torch.Tensor) -> None:
        self.image = self.model.preprocess(image[None].to(self.device))

    def _decode(self, points: torch.Tensor, labels: torch.Tensor, multimask_output: bool):
        h, w = self.original_size
        logits, iou = self.model.predict_masks(self.image, points[None], labels[None], h, w)
        logits, iou = logits[0], iou[0]
        return (logits, iou) if multimask_output else select_best(logits, iou)
