"""Distillation targets for SqueezeSAM ("distills the power of SAM"): a frozen promptable teacher's
masks for the very prompts the student gets, round by round.

A teacher splits into its image encoder (:meth:`embed`, the expensive part, once per image) and
its prompt decoder (:meth:`decode`, per round, since iterative clicks depend on the student's
errors and cannot be precomputed). Embeddings can be stored once per image view in a
:class:`TeacherEmbeddingCache` (fp16 safetensors, one file per view) and reused by later epochs and
runs; the decoder always runs online. Teachers are frozen and held outside the student's module
tree (:class:`~efficientsam_plugins.models.sami.teachers.TeacherSlot`), so checkpoints never carry them.
"""
import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fileio import atomic_write, atomic_write_json
from ..modeling.common import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT

CACHE_FORMAT = 'efficientsam_plugins/squeezesam-teacher-embeddings/v1'
TEACHER_KINDS = ('efficientsam', 'sam')


class MaskTeacher(nn.Module):
    """Frozen teacher: ``embed(images [B, 3, S, S] in [0, 1]) -> [B, C, h, w]`` and
    ``decode(embedding [1, C, h, w], points [Q, N, 2], labels [Q, N], img_size) -> (logits [Q, M, h', w'], iou [Q, M])``."""

    description: Dict[str, Any]

    def freeze(self) -> 'MaskTeacher':
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> 'MaskTeacher':
        return super().train(False)  # always in eval mode

    @torch.no_grad()
    def targets(self, embedding: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, img_size: int,
                mask_size: int) -> torch.Tensor:
        """Bool ``[Q, mask_size, mask_size]``: the candidate with the highest predicted IoU (what the
        teacher's predictor returns), resized to the student's output and thresholded at 0."""
        logits, iou = self.decode(embedding, points, labels, img_size)
        best = logits[torch.arange(len(iou), device=iou.device), iou.argmax(1)]
        return F.interpolate(best[:, None].float(), (mask_size, mask_size), mode='bilinear')[:, 0] > 0


class EfficientSamMaskTeacher(MaskTeacher):
    """An EfficientSAM (:func:`~efficientsam_plugins.models.efficient_sam.build_efficient_sam`),
    through the same embedding / decoder split as its predictor."""

    def __init__(self, model: nn.Module, description: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.model = model
        self.description = dict(description or dict(kind='efficientsam'))
        self.freeze()

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_embeddings(images)

    @torch.no_grad()
    def decode(self, embedding, points, labels, img_size):
        logits, iou = self.model.predict_masks(embedding, points[None], labels[None], True, img_size, img_size)
        return logits[0], iou[0]


class SegmentAnythingMaskTeacher(MaskTeacher):
    """SAM from the ``segment_anything`` package: square training images are resized to its 1024
    input (no padding needed); box corners go to its box embedding, the other points to its point
    embedding, as its predictor does."""

    def __init__(self, sam: nn.Module, description: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.sam = sam
        self.description = dict(description or dict(kind='sam'))
        self.freeze()

    @property
    def input_size(self) -> int:
        return self.sam.image_encoder.img_size

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        size = self.input_size
        pixels = F.interpolate(images.float() * 255, (size, size), mode='bilinear')
        return self.sam.image_encoder((pixels - self.sam.pixel_mean) / self.sam.pixel_std)

    @torch.no_grad()
    def decode(self, embedding, points, labels, img_size):
        coords = torch.where(points >= 0, points * (self.input_size / img_size), points)
        is_box = (labels[:, 0] == LABEL_BOX_TOP_LEFT) & (labels[:, 1] == LABEL_BOX_BOTTOM_RIGHT)
        q = len(labels)
        logits = iou = None
        for selection, box in ((is_box, True), (~is_box, False)):
            index = selection.nonzero()[:, 0]
            if index.numel() == 0:
                continue
            rest = 2 if box else 0
            query_points = (coords[index, rest:], labels[index, rest:]) if coords.shape[1] > rest else None
            boxes = coords[index, :2].reshape(-1, 4) if box else None
            sparse, dense = self.sam.prompt_encoder(points=query_points, boxes=boxes, masks=None)
            part_logits, part_iou = self.sam.mask_decoder(embedding, self.sam.prompt_encoder.get_dense_pe(),
                                                          sparse, dense, True)
            if logits is None:
                logits = part_logits.new_zeros((q, *part_logits.shape[1:]))
                iou = part_iou.new_zeros((q, part_iou.shape[1]))
            logits[index], iou[index] = part_logits, part_iou
        return logits, iou


def build_mask_teacher(kind: str = 'efficientsam', checkpoint: Optional[str] = None,
                       config: Any = None) -> MaskTeacher:
    """``'efficientsam'``: :func:`build_efficient_sam(config or 'ti', checkpoint)` (a path or zoo
    name); ``'sam'``: ``segment_anything``'s ``sam_model_registry[config or 'vit_h'](checkpoint)``."""
    if kind == 'efficientsam':
        from ..build import build_efficient_sam
        config = config or 'ti'
        return EfficientSamMaskTeacher(build_efficient_sam(config, checkpoint),
                                       dict(kind=kind, config=config, checkpoint=str(checkpoint)))
    if kind == 'sam':
        if checkpoint is None:
            raise ValueError("the SAM teacher needs checkpoint=<sam_vit_h_4b8939.pth or another SAM file>")
        from segment_anything import sam_model_registry

        from ..checkpoint import checkpoint_path
        config = config or 'vit_h'
        if config not in sam_model_registry:
            raise ValueError(f'unknown SAM model type {config!r}; expected one of {sorted(sam_model_registry)}')
        return SegmentAnythingMaskTeacher(sam_model_registry[config](checkpoint=checkpoint_path(checkpoint)),
                                          dict(kind=kind, config=config, checkpoint=str(checkpoint)))
    raise ValueError(f'unknown teacher kind {kind!r}; expected one of {TEACHER_KINDS}')


class TeacherEmbeddingCache:
    """Teacher image embeddings on disk, one fp16 safetensors file per image view key (image path,
    crop window and input size), under a ``meta.json`` that names the teacher: a cache made for
    another teacher is refused. Files are written atomically, so ranks and interrupted runs never
    leave a partial entry; a key is only ever computed again if its file is missing."""

    def __init__(self, root: str, teacher_description: Mapping[str, Any]) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        meta = dict(format=CACHE_FORMAT, teacher=json.loads(json.dumps(dict(teacher_description))))
        meta_path = os.path.join(root, 'meta.json')
        if os.path.isfile(meta_path):
            with open(meta_path, encoding='utf-8') as f:
                existing = json.load(f)
            if existing != meta:
                raise ValueError(f'the teacher-embedding cache {root} was made for {existing.get("teacher")}, '
                                 f'not {meta["teacher"]}: use another cache_dir')
        else:
            atomic_write_json(meta_path, meta, indent=1)

    def path(self, key: str) -> str:
        return os.path.join(self.root, hashlib.sha1(key.encode()).hexdigest() + '.safetensors')

    def get(self, key: str) -> Optional[torch.Tensor]:
        from safetensors.torch import load_file
        path = self.path(key)
        return load_file(path)['embedding'] if os.path.isfile(path) else None

    def put(self, key: str, embedding: torch.Tensor) -> None:
        from safetensors.torch import save_file
        tensors = {'embedding': embedding.detach().to('cpu', torch.float16).contiguous()}
        atomic_write(self.path(key), lambda tmp: save_file(tensors, tmp, metadata={'key': key}))


def teacher_embeddings(teacher: MaskTeacher, images: torch.Tensor, keys: Optional[Sequence[str]] = None,
                       cache: Optional[TeacherEmbeddingCache] = None) -> torch.Tensor:
    """``[B, C, h, w]`` embeddings of ``images``, read from ``cache`` where present (by ``keys``) and
    computed, then stored, for the rest."""
    if cache is None:
        return teacher.embed(images)
    if keys is None or len(keys) != len(images):
        raise ValueError('a teacher-embedding cache needs one key per image')
    found: List[Optional[torch.Tensor]] = [cache.get(k) for k in keys]
    missing = [i for i, e in enumerate(found) if e is None]
    if missing:
        computed = teacher.embed(images[missing])
        for i, embedding in zip(missing, computed):
            cache.put(keys[i], embedding)
            found[i] = embedding
    return torch.stack([e.to(images.device, torch.float32) for e in found])


def bind_teacher(teacher: MaskTeacher, images: torch.Tensor, img_size: int, mask_size: int,
                 keys: Optional[Sequence[str]] = None, cache: Optional[TeacherEmbeddingCache] = None):
    """The ``teacher`` argument of :func:`~efficientsam_plugins.models.efficient_sam.training.training_round`
    for one batch: images embedded once, each round's prompts decoded to bool ``[sum Q_b, m, m]``."""
    embeddings = teacher_embeddings(teacher, images, keys, cache)

    def targets(points: List[torch.Tensor], labels: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat([teacher.targets(embeddings[b:b + 1], points[b], labels[b], img_size, mask_size)
                          for b in range(len(points))])
    return targets
