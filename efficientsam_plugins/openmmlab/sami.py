"""SAMI (EfficientSAM's masked image pretraining) as an mmpretrain self-supervised algorithm, in
mmpretrain's split: algorithm :class:`SAMI`, backbone ``SAMIViT``, neck ``CrossAttentionDecoder``,
head :class:`SAMIHead` (loss ``ReconstructionLoss``), target generators ``SAMTeacher`` /
``EfficientSAMTeacher``. The computation lives in :mod:`efficientsam_plugins.modeling.sami`; the teachers in
:mod:`efficientsam_plugins.training.teachers`.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..modeling.sami.decoder import CrossAttentionDecoder
from ..modeling.sami.head import ProjectionHead, ReconstructionLoss
from ..modeling.sami.masking import check_mask_ratio, random_token_mask
from ..training.losses import check_finite
from ..training.teachers import EfficientSAMTeacher, SAMTeacher, TeacherSlot
from .transforms import TARGET_KEY

TEACHER_MODES = ('online', 'cached')

# core classes (they import no toolbox), so registered by calls, under their own names
MODELS.register_module(module=CrossAttentionDecoder)
MODELS.register_module(module=ReconstructionLoss)
MODELS.register_module(module=SAMTeacher)
MODELS.register_module(module=EfficientSAMTeacher)


@MODELS.register_module()
class SAMIHead(ProjectionHead):
    """Linear projection to the teacher's channels plus the reconstruction loss (a config dict)."""

    def __init__(self, in_channels: int = 512, out_channels: int = 256,
                 loss: Union[dict, nn.Module, None] = None) -> None:
        """``loss`` defaults to ``dict(type='ReconstructionLoss', criterion='mse')``."""
        loss = loss or dict(type='ReconstructionLoss', criterion='mse')
        super().__init__(in_channels, out_channels, MODELS.build(loss) if isinstance(loss, dict) else loss)


@MODELS.register_module()
class SAMI(BaseSelfSupervisor):
    """SAMI: a masked student ViT and a decoder reconstruct a frozen SAM encoder's features.

    The teacher (``target_generator``) is built only for ``teacher_mode='online'``, which runs it
    on every batch, and is kept out of the module tree and checkpoints; ``'cached'`` reads the
    targets that the pipeline's ``LoadSAMITeacherTarget`` cut from a teacher-feature cache.
    Masks are a function of (seed, iteration, dataset index) (see
    :func:`~efficientsam_plugins.modeling.sami.masking.random_token_mask`), so resumed and multi-process
    runs mask every sample as one uninterrupted single-process run would. The seed is a buffer
    (``mask_seed``), saved with checkpoints and broadcast by DDP.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict,
                 target_generator: Optional[Union[dict, nn.Module]] = None,
                 teacher_mode: str = 'online', mask_ratio: float = 0.75,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        if teacher_mode not in TEACHER_MODES:
            raise ValueError(f'unknown teacher_mode {teacher_mode!r}; expected one of {TEACHER_MODES}')
        if teacher_mode == 'online' and target_generator is None:
            raise ValueError("teacher_mode='online' needs a target_generator (the teacher)")
        super().__init__(backbone=backbone, neck=neck, head=head, target_generator=None,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.teacher_mode = teacher_mode
        self.mask_ratio = check_mask_ratio(mask_ratio)
        if teacher_mode == 'online':
            teacher = (MODELS.build(target_generator) if isinstance(target_generator, dict)
                       else target_generator)
            if teacher.out_channels != self.head.proj.out_features:
                raise ValueError(f'the head projects to {self.head.proj.out_features} channels but '
                                 f'the teacher gives {teacher.out_channels}')
            self.target_generator = TeacherSlot(teacher)
        self.register_buffer('mask_seed', torch.tensor(torch.initial_seed() % (1 << 62)))
        self._calls = 0

    @property
    def teacher(self) -> Optional[nn.Module]:
        return None if self.target_generator is None else self.target_generator.teacher

    def extract_feat(self, inputs: Union[torch.Tensor, List[torch.Tensor]]):
        """The student's features of whole (unmasked) images."""
        return self.backbone(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)

    def _targets(self, images: torch.Tensor, data_samples: Sequence[DataSample],
                 grid: tuple) -> torch.Tensor:
        has_cached = [TARGET_KEY in sample for sample in data_samples]
        if self.teacher_mode == 'online':
            if any(has_cached):
                raise ValueError(f"data samples carry cached targets ('{TARGET_KEY}') but "
                                 f"teacher_mode='online'; set model.teacher_mode='cached' or drop "
                                 f"LoadSAMITeacherTarget from the pipeline")
            maps = self.target_generator(images, grid)
        else:
            if not all(has_cached):
                raise ValueError(f"teacher_mode='cached' needs '{TARGET_KEY}' in every data sample: "
                                 f"add dict(type='LoadSAMITeacherTarget', cache_root=...) after "
                                 f"RandomFlip and PackInputs(algorithm_keys=['{TARGET_KEY}'])")
            maps = torch.stack([sample.get(TARGET_KEY) for sample in data_samples]).to(images.device, torch.float32)
            if tuple(maps.shape[-2:]) != tuple(grid):
                raise ValueError(f'cached targets have grid {tuple(maps.shape[-2:])}, the student '
                                 f'{tuple(grid)}: check LoadSAMITeacherTarget(patch_size=...)')
        check_finite({f'the teacher targets of {s.metainfo.get("img_path", i)}': m
                      for i, (s, m) in enumerate(zip(data_samples, maps))})
        return maps.flatten(2).transpose(1, 2)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> dict:
        images = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        patch = self.backbone.patch_size
        grid = (images.shape[-2] // patch, images.shape[-1] // patch)
        sample_ids = torch.tensor([sample.metainfo.get('sample_idx', i)
                                   for i, sample in enumerate(data_samples)], device=images.device)
        # the runner's global iteration, else a count of this model's loss calls
        step = int(MessageHub.get_current_instance().get_info('iter', self._calls))
        self._calls += 1
        mask = random_token_mask(sample_ids, step, grid[0] * grid[1], self.mask_ratio, self.mask_seed)
        visible, ids_visible = self.backbone.forward_masked(images, mask)
        losses = dict(loss=self.head.loss(self.neck(visible, ids_visible, mask, grid),
                                          self._targets(images, data_samples, grid)))
        check_finite(losses, f'at iteration {step}')
        return losses
