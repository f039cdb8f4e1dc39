"""The frozen teachers of training, with one interface: ``embed(images) -> [B, C, h, w]`` and, where
the teacher is promptable, ``decode(embedding [1, C, h, w], points [Q, N, 2], labels [Q, N],
img_size) -> (logits [Q, M, h', w'], iou [Q, M])``; ``describe()`` says what makes two teachers'
embeddings interchangeable (:class:`~.feature_cache.TeacherFeatureCache` records it and refuses
another teacher's cache).

SAMI reconstructs an image encoder's maps (:class:`FrozenTeacher`: SAM, EfficientSAM or any core ViT
on the student's normalised images, at the student's resolution, position embeddings interpolated,
or at a fixed one such as SAM's native 1024, the map then pooled to the student's grid exactly as
cached maps are cut, :mod:`.views`). SqueezeSAM's distillation decodes the student's prompts with a
whole promptable model (:func:`build_mask_teacher`: EfficientSAM or segment_anything's SAM, on
images in [0, 1]). Teachers stay in eval mode, are never trained or re-initialised, and
:class:`TeacherSlot` keeps them out of the student's module tree and checkpoints.
"""
import abc
import functools
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import checkpoint_path, load_prefixed
from ..modeling.common import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, select_best
from ..modeling.vit import resize_abs_pos
from .feature_cache import TeacherFeatureCache
from .losses import check_finite
from .sam_round import TeacherTargets, decode_efficient_sam, per_image
from .views import resize_to_grid

LAYERS = ('neck', 'last_block')

SAM_ARCHS: Dict[str, Dict[str, Any]] = {
    'vit_h': dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    'vit_l': dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    'vit_b': dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
}
_SAM_ALIASES = {'h': 'vit_h', 'huge': 'vit_h', 'vit-h': 'vit_h', 'l': 'vit_l', 'large': 'vit_l',
                'vit-l': 'vit_l', 'b': 'vit_b', 'base': 'vit_b', 'vit-b': 'vit_b'}
_SAM_DEFAULTS = dict(img_size=1024, patch_size=16, window_size=14, out_chans=256, mlp_ratio=4.0)


def teacher_checkpoint(checkpoint: Optional[Union[str, os.PathLike]], what: str, family: str,
                       config: Optional[str]) -> Tuple[Optional[str], str]:
    """The local file of a teacher's checkpoint (a path or a zoo name), found before the encoder
    is built, and the official file of its architecture (from the zoo), which a missing file's
    error names."""
    from ..zoo import ZooError, entry_for
    try:
        entry = entry_for(family, config) if config else None
    except ZooError:
        entry = None
    expected = entry.filename if entry else 'a checkpoint of this arch'
    try:
        return (None if checkpoint is None else checkpoint_path(checkpoint)), expected
    except FileNotFoundError as err:
        how = f'`python tools/zoo.py download {entry.name}` fetches it, or ' if entry else ''
        raise FileNotFoundError(f'{what} teacher: {err}; expected the official file {expected} '
                                f'({how}pass its path as checkpoint=...)') from err


class Teacher(nn.Module, metaclass=abc.ABCMeta):
    """The interface of every teacher (see the module docstring): frozen, always in eval mode;
    promptable ones (:class:`MaskTeacher`) also ``decode``."""

    @abc.abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's map ``[B, C, h, w]`` of ``images`` ``[B, 3, H, W]``."""

    @abc.abstractmethod
    def describe(self) -> Dict[str, Any]:
        """What makes two teachers' embeddings interchangeable (JSON-able)."""

    def freeze(self) -> 'Teacher':
        return self.requires_grad_(False).train(False)

    def train(self, mode: bool = True) -> 'Teacher':
        """Always eval mode, whatever a parent asks."""
        return super().train(False)

    def init_weights(self) -> None:
        """Keeps the loaded weights: a parent's ``init_cfg`` must never re-initialise a teacher."""


class FrozenTeacher(Teacher):
    """SAMI's teachers: frozen image encoders whose maps of the student's (normalised) images are the
    reconstruction targets. Subclasses build their encoder, set ``out_channels``, ``patch_size`` and
    ``native_size`` (the input side the encoder was trained at) and implement ``encode``.

    ``resolution='student'`` runs the encoder on the student's images as they are; an int resizes
    them (bilinear) to that square size first, e.g. 1024 for SAM's native 64x64 grid, whose map is
    then pooled to the student's grid. ``layer`` is ``'neck'`` (256-d SAM neck output) or
    ``'last_block'`` (the last ViT block). Teachers of a named architecture set ``arch_name`` and
    ``checkpoint``, which :meth:`describe` then records.
    """

    out_channels: int
    patch_size: int
    native_size: int
    arch_name: Optional[str] = None
    checkpoint: Optional[str] = None

    def __init__(self, resolution: Union[str, int] = 'student', layer: str = 'neck') -> None:
        super().__init__()
        if resolution != 'student' and not (isinstance(resolution, int) and resolution > 0):
            raise ValueError(f"teacher resolution must be 'student' or a positive int, got {resolution!r}")
        if layer not in LAYERS:
            raise ValueError(f'unknown teacher layer {layer!r}; expected one of {LAYERS}')
        self.resolution, self.layer = resolution, layer

    @abc.abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Target map ``[B, C, h, w]`` of images already at the teacher's input size."""

    def input_size(self, image_size: int) -> int:
        """The side at which the encoder sees an ``image_size`` input."""
        return image_size if self.resolution == 'student' else self.resolution

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The map on the encoder's own grid, of images resized to the teacher's resolution."""
        if self.resolution != 'student' and tuple(images.shape[-2:]) != (self.resolution,) * 2:
            images = F.interpolate(images, size=(self.resolution,) * 2, mode='bilinear', align_corners=False)
        return self.encode(images)

    def forward(self, images: torch.Tensor, grid_hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Targets ``[B, C, *grid_hw]`` (the encoder's own grid when ``grid_hw`` is None)."""
        maps = self.embed(images)
        return maps if grid_hw is None else resize_to_grid(maps, grid_hw)

    def describe(self) -> Dict[str, Any]:
        described = dict(type=type(self).__name__, resolution=self.resolution, layer=self.layer,
                         out_channels=self.out_channels)
        if self.arch_name is not None:  # the teachers built from a named architecture
            described.update(arch=self.arch_name, checkpoint=self.checkpoint and os.path.basename(self.checkpoint))
        return described


class SAMTeacher(FrozenTeacher):
    """A SAM image encoder (``segment_anything``'s ``ImageEncoderViT``) as SAMI's teacher.

    ``arch`` is ``'vit_h'``, ``'vit_l'``, ``'vit_b'`` or a dict with ``embed_dim``, ``depth``,
    ``num_heads``, ``global_attn_indexes`` (and optionally the keys of ``_SAM_DEFAULTS``).
    ``checkpoint`` is an official SAM checkpoint (path or zoo name such as ``'sam_vit_h'``), of
    which only ``image_encoder.*`` is loaded, strictly; None keeps random weights (for benchmarks
    and smoke tests only).
    """

    def __init__(self, arch: Union[str, Dict[str, Any]] = 'vit_h',
                 checkpoint: Optional[Union[str, os.PathLike]] = 'sam_vit_h',
                 resolution: Union[str, int] = 'student', layer: str = 'neck') -> None:
        super().__init__(resolution, layer)
        try:
            from segment_anything.modeling import ImageEncoderViT
        except ImportError as err:
            raise ImportError('SAMTeacher needs the segment_anything package '
                              '(pip install segment-anything)') from err
        if isinstance(arch, str):
            config = _SAM_ALIASES.get(arch.lower(), arch.lower())
            if config not in SAM_ARCHS:
                raise ValueError(f'unknown SAM arch {arch!r}; expected one of {sorted(SAM_ARCHS)} or a dict')
            arch = SAM_ARCHS[config]
        else:
            missing = {'embed_dim', 'depth', 'num_heads', 'global_attn_indexes'} - set(arch)
            if missing:
                raise ValueError(f'custom SAM arch lacks {sorted(missing)}')
            config = None
        self.arch_name, self.spec = config or 'custom', {**_SAM_DEFAULTS, **arch}
        spec, what = self.spec, f'SAM {self.arch_name}'
        self.checkpoint, expected = teacher_checkpoint(checkpoint, what, 'sam', config)
        self.encoder = ImageEncoderViT(
            img_size=spec['img_size'], patch_size=spec['patch_size'], embed_dim=spec['embed_dim'], depth=spec['depth'],
            num_heads=spec['num_heads'], mlp_ratio=spec['mlp_ratio'], out_chans=spec['out_chans'], qkv_bias=True,
            norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, rel_pos_zero_init=True,
            window_size=spec['window_size'], global_attn_indexes=tuple(spec['global_attn_indexes']))
        self.out_channels = spec['out_chans'] if layer == 'neck' else spec['embed_dim']
        self.patch_size, self.native_size = spec['patch_size'], spec['img_size']
        if self.checkpoint is not None:
            load_prefixed(self.encoder, self.checkpoint, 'image_encoder.', what=f'{what} (expected {expected})')
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        enc, patch = self.encoder, self.spec['patch_size']
        if images.shape[-2] % patch or images.shape[-1] % patch:
            raise ValueError(f'teacher input {tuple(images.shape[-2:])} is not divisible by its patch size {patch}')
        x = enc.patch_embed(images)
        x = x + resize_abs_pos(enc.pos_embed.flatten(1, 2), False, x.shape[1:3]).to(x.dtype)
        for block in enc.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return enc.neck(x) if self.layer == 'neck' else x

    def describe(self) -> Dict[str, Any]:
        keys = ('embed_dim', 'depth', 'num_heads', 'global_attn_indexes', 'img_size', 'patch_size',
                'window_size', 'out_chans')
        spec = {k: (list(self.spec[k]) if k == 'global_attn_indexes' else self.spec[k]) for k in keys}
        return dict(super().describe(), spec=spec)


class EfficientSAMTeacher(FrozenTeacher):
    """An EfficientSAM image encoder (``'ti'``, ``'s'`` or a config) loaded from an EfficientSAM checkpoint."""

    def __init__(self, arch: Union[str, Dict[str, Any]] = 'ti',
                 checkpoint: Optional[Union[str, os.PathLike]] = 'efficientsam_ti',
                 resolution: Union[str, int] = 'student', layer: str = 'neck') -> None:
        from ..modeling.efficient_sam import NAMED_CONFIGS, build_image_encoder, resolve_config
        super().__init__(resolution, layer)
        cfg = resolve_config(arch)
        config = {named['embed_dim']: name for name, named in NAMED_CONFIGS.items()}.get(cfg['embed_dim'])
        self.arch_name, what = config or 'custom', f'EfficientSAM {config or "custom"}'
        self.checkpoint, expected = teacher_checkpoint(checkpoint, what, 'efficientsam', config)
        self.encoder = build_image_encoder(cfg)
        if self.checkpoint is not None:
            load_prefixed(self.encoder, self.checkpoint, 'image_encoder.', what=f'{what} (expected {expected})')
        self.out_channels = self.encoder.out_channels if layer == 'neck' else self.encoder.embed_dim
        self.patch_size, self.native_size = self.encoder.patch_size, self.encoder.img_size
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = self.encoder.forward_features(images)
        return self.encoder.neck(x) if self.layer == 'neck' else x


class MaskTeacher(Teacher):
    """A whole promptable model as a distillation teacher, on images in [0, 1]: ``decode(embedding
    [1, C, h, w], points [Q, N, 2], labels [Q, N], img_size) -> (logits [Q, M, h', w'], iou [Q, M])``
    decodes one image's queries (points in ``img_size`` pixels). ``description`` (kind, config,
    checkpoint; default: the kind) is what :meth:`describe` returns."""

    kind: str

    def __init__(self, model: nn.Module, description: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.model, self.description = model, dict(description or dict(kind=self.kind))
        self.freeze()

    def describe(self) -> Dict[str, Any]:
        return self.description


class EfficientSamMaskTeacher(MaskTeacher):
    """An EfficientSAM, through the same embedding / decoder split as its predictor."""

    kind = 'efficientsam'

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_embeddings(images)

    @torch.no_grad()
    def decode(self, embedding, points, labels, img_size):
        return decode_efficient_sam(self.model, embedding, points, labels, img_size)


class SegmentAnythingMaskTeacher(MaskTeacher):
    """SAM from the ``segment_anything`` package: square training images are resized to its 1024
    input (no padding needed); box corners go to its box embedding, the other points to its point
    embedding, as its predictor does."""

    kind = 'sam'

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        size, sam = self.model.image_encoder.img_size, self.model
        pixels = F.interpolate(images.float() * 255, (size, size), mode='bilinear')
        return sam.image_encoder((pixels - sam.pixel_mean) / sam.pixel_std)

    @torch.no_grad()
    def decode(self, embedding, points, labels, img_size):
        sam = self.model
        coords = torch.where(points >= 0, points * (sam.image_encoder.img_size / img_size), points)
        is_box = (labels[:, 0] == LABEL_BOX_TOP_LEFT) & (labels[:, 1] == LABEL_BOX_BOTTOM_RIGHT)
        logits = iou = None
        for selection, box in ((is_box, True), (~is_box, False)):
            index = selection.nonzero()[:, 0]
            if index.numel() == 0:
                continue
            rest = 2 if box else 0
            query_points = (coords[index, rest:], labels[index, rest:]) if coords.shape[1] > rest else None
            boxes = coords[index, :2].reshape(-1, 4) if box else None
            sparse, dense = sam.prompt_encoder(points=query_points, boxes=boxes, masks=None)
            part_logits, part_iou = sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, True)
            if logits is None:
                logits = part_logits.new_zeros((len(labels), *part_logits.shape[1:]))
                iou = part_iou.new_zeros((len(labels), part_iou.shape[1]))
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
        config = config or 'vit_h'
        if config not in sam_model_registry:
            raise ValueError(f'unknown SAM model type {config!r}; expected one of {sorted(sam_model_registry)}')
        return SegmentAnythingMaskTeacher(sam_model_registry[config](checkpoint=checkpoint_path(checkpoint)),
                                          dict(kind=kind, config=config, checkpoint=str(checkpoint)))
    raise ValueError(f"unknown teacher kind {kind!r}; expected 'efficientsam' or 'sam'")


def bind_teacher(teacher: Teacher, images: torch.Tensor, img_size: int, mask_size: int,
                 keys: Optional[Sequence[str]] = None, cache: Optional[TeacherFeatureCache] = None) -> TeacherTargets:
    """The ``teacher`` argument of :func:`~.sam_round.training_round` for one batch: ``images``
    embedded once (through ``cache`` by ``keys`` where given); each round's prompts decoded to the
    candidate with the highest predicted IoU (what the teacher's predictor returns), resized to the
    student's ``mask_size`` and thresholded at 0: bool ``[sum Q_b, mask_size, mask_size]``."""
    embeddings = teacher.embed(images) if cache is None else cache.embed(teacher, images, keys or ())
    check_finite({'teacher embeddings': embeddings}, f'of the images {list(keys or ())}')
    decode = per_image(lambda b, points, labels, _: teacher.decode(embeddings[b:b + 1], points, labels, img_size))

    @torch.no_grad()
    def targets(points: List[torch.Tensor], labels: List[torch.Tensor]) -> torch.Tensor:
        best = select_best(*decode(points, labels))[0]
        return F.interpolate(best.float(), (mask_size, mask_size), mode='bilinear')[:, 0] > 0
    return targets


class TeacherSlot(nn.Module):
    """Keeps a teacher out of the module tree while it still follows ``.to()``/``.cuda()``/``.half()``.

    The teacher is invisible to ``parameters()``, ``state_dict()`` (so checkpoints never carry
    it), ``apply``/``init_weights`` of parents and DDP's parameter and buffer sync.
    """

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, 'teacher', teacher)  # a plain attribute, not a submodule

    def _apply(self, fn, recurse: bool = True):
        self.teacher._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, *args, **kwargs):
        return self.teacher(*args, **kwargs)

    def extra_repr(self) -> str:
        return f'teacher={type(self.teacher).__name__} (outside the module tree)'
