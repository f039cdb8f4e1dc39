"""Interactive prediction: embed an image once, then answer many box/point prompts in one call."""
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .efficient_sam import EfficientSam
from .prompt_encoder import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_POINT

ArrayLike = Union[np.ndarray, torch.Tensor, list, tuple]


def image_to_tensor(image) -> torch.Tensor:
    """An RGB image as float ``[3, H, W]`` in [0, 1].

    Accepts an ``HxWx3`` uint8 array, a PIL image, or a tensor: uint8 ``[H, W, 3]`` /
    ``[3, H, W]``, or float ``[3, H, W]`` already in [0, 1].
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
        if image.shape[-1] == 3:
            image = image.permute(2, 0, 1)
        if image.shape[0] != 3:
            raise ValueError(f'uint8 image tensors must be [H, W, 3] or [3, H, W], got {tuple(image.shape)}')
        return image.float() / 255
    if not image.is_floating_point():
        raise ValueError(f'image tensors must be uint8 or float, got {image.dtype}')
    if image.shape[0] != 3:
        raise ValueError(f'float image tensors must be [3, H, W] in [0, 1], got {tuple(image.shape)}')
    if image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError('float image tensors must hold values in [0, 1]')
    return image.float()


class EfficientSamPredictor:
    """SAM-style predictor: :meth:`set_image` once, then :meth:`predict` any number of prompts.

    All queries of a call share the one image embedding (it is never copied per query); they are
    decoded in chunks of ``max_queries_per_batch`` to bound memory.
    """

    def __init__(self, model: EfficientSam, max_queries_per_batch: int = 64) -> None:
        self.model = model.eval()
        self.max_queries_per_batch = max_queries_per_batch
        self.reset_image()

    @classmethod
    def from_pretrained(cls, name='efficientsam_ti', checkpoint=None, device='cpu',
                        **kwargs) -> 'EfficientSamPredictor':
        """A predictor on ``device`` for a model-zoo name or a config plus checkpoint.

        ``from_pretrained('efficientsam_ti')`` downloads (once) and verifies the released weights;
        ``from_pretrained('ti', 'path/to.pt')`` builds the ``'ti'`` config with a local checkpoint.
        """
        from .efficient_sam import build_efficient_sam
        zoo_configs = {'efficientsam_ti': 'ti', 'efficientsam_s': 's'}
        if isinstance(name, str) and name in zoo_configs:
            name, checkpoint = zoo_configs[name], checkpoint or f'zoo://{name}'
        return cls(build_efficient_sam(name, checkpoint).to(device), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    def reset_image(self) -> None:
        self.image_embedding: Optional[torch.Tensor] = None
        self.original_size: Optional[Tuple[int, int]] = None

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Computes and keeps the embedding of ``image`` (see :func:`image_to_tensor`)."""
        tensor = image_to_tensor(image)
        if tensor.shape[1] == 0 or tensor.shape[2] == 0:
            raise ValueError(f'image is empty: shape {tuple(tensor.shape)}')
        self.original_size = (tensor.shape[1], tensor.shape[2])
        self.image_embedding = self.model.get_image_embeddings(tensor[None].to(self.device))

    def _as_tensor(self, value: ArrayLike, name: str) -> torch.Tensor:
        """``value`` as a float tensor; a ValueError naming ``name`` where numpy or torch would raise
        errors that do not say which argument was wrong (strings, ragged lists, objects)."""
        if isinstance(value, torch.Tensor):
            tensor = value
        else:
            try:
                array = np.asarray(value)
            except ValueError as err:
                raise ValueError(f'{name} must be a rectangular array of numbers, got {value!r:.100}') from err
            if array.dtype.kind not in 'iuf':
                raise ValueError(f'{name} must hold numbers, got {value!r:.100} (dtype {array.dtype})')
            tensor = torch.from_numpy(array.astype(np.float64))
        if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
            raise ValueError(f'{name} must be numeric, got {tensor.dtype}')
        if not torch.isfinite(tensor.float()).all():
            raise ValueError(f'{name} contains NaN or infinite values')
        return tensor.float()

    def _prompts(self, points, point_labels, boxes) -> Tuple[torch.Tensor, torch.Tensor]:
        """Validated prompts as ``[Q, N, 2]`` points and ``[Q, N]`` labels."""
        parts, labels = [], []
        if points is not None:
            pts = self._as_tensor(points, 'points')
            if pts.ndim == 2:
                pts = pts[None]
            if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
                raise ValueError(f'points must be [N, 2] or [Q, N, 2] with N >= 1, got {tuple(pts.shape)}')
            if point_labels is None:
                lbl = torch.full(pts.shape[:2], float(LABEL_POINT))
            else:
                lbl = self._as_tensor(point_labels, 'point_labels')
                if lbl.ndim == 1:
                    lbl = lbl[None]
                if lbl.shape != pts.shape[:2]:
                    raise ValueError(f'point_labels must be {tuple(pts.shape[:2])} to match points, '
                                     f'got {tuple(lbl.shape)}')
                bad = sorted(set(lbl.unique().tolist()) - {float(LABEL_POINT)})
                if bad:
                    raise ValueError(f'point labels {bad} are not supported: the released EfficientSAM '
                                     f'weights know only positive points (label 1); negative or '
                                     f'background points (0/-1) are not supported, and boxes go in `boxes`')
            self._check_inside(pts, 'points')
            parts.append(pts)
            labels.append(lbl)
        elif point_labels is not None:
            raise ValueError('point_labels given without points')
        if boxes is not None:
            bxs = self._as_tensor(boxes, 'boxes')
            if bxs.ndim == 1:
                bxs = bxs[None]
            if bxs.ndim != 2 or bxs.shape[-1] != 4 or bxs.shape[0] == 0:
                raise ValueError(f'boxes must be [4] or [Q, 4] (x1, y1, x2, y2), got {tuple(bxs.shape)}')
            if ((bxs[:, 2] < bxs[:, 0]) | (bxs[:, 3] < bxs[:, 1])).any():
                raise ValueError('boxes must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1')
            corners = bxs.view(-1, 2, 2)
            self._check_inside(corners, 'boxes')
            corner_labels = torch.tensor([float(LABEL_BOX_TOP_LEFT), float(LABEL_BOX_BOTTOM_RIGHT)])
            if parts and parts[0].shape[0] != corners.shape[0]:
                raise ValueError(f'{corners.shape[0]} boxes but {parts[0].shape[0]} point sets: '
                                 f'give one point set per box')
            parts.insert(0, corners)
            labels.insert(0, corner_labels.expand(corners.shape[0], 2))
        if not parts:
            raise ValueError('no prompt given: pass points and/or boxes')
        if len(parts) == 2 and parts[1].shape[0] == 1 and parts[0].shape[0] > 1:
            parts[1] = parts[1].expand(parts[0].shape[0], -1, -1)
            labels[1] = labels[1].expand(parts[0].shape[0], -1)
        prompts, prompt_labels = torch.cat(parts, dim=1), torch.cat(labels, dim=1)
        limit = self.model.decoder_max_num_input_points
        if prompts.shape[1] > limit:
            raise ValueError(f'{prompts.shape[1]} prompt points per query (a box counts as 2) but the '
                             f'model takes at most {limit}; nothing is truncated, split the prompt')
        return prompts, prompt_labels

    def _check_inside(self, coords: torch.Tensor, name: str) -> None:
        h, w = self.original_size
        outside = (coords[..., 0] < 0) | (coords[..., 0] > w) | (coords[..., 1] < 0) | (coords[..., 1] > h)
        if outside.any():
            first = coords[outside][0].tolist()
            raise ValueError(f'{name} has {int(outside.sum())} coordinates outside the {w}x{h} image '
                             f'(x in [0, {w}], y in [0, {h}]), e.g. {first}')

    @torch.no_grad()
    def predict_torch(self, points: Optional[ArrayLike] = None, point_labels: Optional[ArrayLike] = None,
                      boxes: Optional[ArrayLike] = None,
                      multimask_output: bool = True) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`predict`, returning tensors on the model's device."""
        if self.image_embedding is None:
            raise RuntimeError('call set_image(image) before predict()')
        prompts, labels = self._prompts(points, point_labels, boxes)
        h, w = self.original_size
        masks, scores, low_res = [], [], []
        for start in range(0, prompts.shape[0], self.max_queries_per_batch):
            chunk = slice(start, start + self.max_queries_per_batch)
            logits, iou = self.model.predict_masks(
                self.image_embedding, prompts[None, chunk].to(self.device),
                labels[None, chunk].to(self.device), multimask_output, h, w)
            logits, iou = logits[0], iou[0]
            masks.append(F.interpolate(logits, (h, w), mode='bicubic') >= self.model.mask_threshold)
            scores.append(iou)
            low_res.append(logits)
        return torch.cat(masks), torch.cat(scores), torch.cat(low_res)

    def predict(self, points: Optional[ArrayLike] = None, point_labels: Optional[ArrayLike] = None,
                boxes: Optional[ArrayLike] = None,
                multimask_output: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for Q queries on the current image.

        Args:
            points: ``[N, 2]`` (one query) or ``[Q, N, 2]`` (x, y) pixels of the original image.
            point_labels: ``[N]`` / ``[Q, N]``; only 1 (positive) is supported by the released
                weights; defaults to all positive.
            boxes: ``[4]`` / ``[Q, 4]`` as (x1, y1, x2, y2) pixels; with points, query ``i`` uses
                box ``i`` and point set ``i`` (a box counts as 2 of the model's 6 points).
            multimask_output: 3 candidate masks per query, else the single-mask output.

        Returns:
            ``(masks, iou_predictions, low_res_logits)``: bool ``[Q, M, H, W]`` at the original
            resolution, float ``[Q, M]``, float ``[Q, M, 256, 256]``; M is 3 or 1, in the model's
            order (pick ``iou_predictions.argmax(1)`` for the best mask).
        """
        masks, scores, low_res = self.predict_torch(points, point_labels, boxes, multimask_output)
        return masks.cpu().numpy(), scores.float().cpu().numpy(), low_res.float().cpu().numpy()
