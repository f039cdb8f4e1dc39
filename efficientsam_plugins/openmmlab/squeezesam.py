"""SqueezeSAM training on SA-1B / COCO with whole-object augmentations and optional distillation:
``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.squeezesam'])``.

Registers in mmengine's root registries (``default_scope='mmengine'``): ``SqueezeSamTrainer``
(MODELS), ``SqueezeSamSA1BDataset`` (DATASETS), ``SqueezeSamExportHook`` (HOOKS), the transforms of
:mod:`.whole_object` (TRANSFORMS), plus everything :mod:`.efficientsam` registers (its data
preprocessor, dataset, collate function and promptable metric, which SqueezeSAM reuses).
"""
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub
from mmengine.registry import HOOKS, MODELS

from ..build import build_squeeze_sam
from ..checkpoint import load_prefixed
from ..evaluation.segmenters import PredictorSegmenter
from ..modeling.common import LABEL_NEGATIVE, LABEL_PADDING, LABEL_POINT
from ..modeling.squeeze_sam.squeeze_sam import SqueezeSam, resolve_config
from ..predictor import SqueezeSamPredictor
from ..training.feature_cache import TeacherFeatureCache
from ..training.sam_round import per_image, training_round
from ..training.teachers import TeacherSlot, bind_teacher, build_mask_teacher
from . import efficientsam  # noqa: F401  (registers the shared data preprocessor, dataset, collate, metric)
from .finetune import PromptableTrainer
from .hooks import EfficientSamExportHook
from .whole_object import SqueezeSamSA1BDataset


def squeeze_sam_decoder(model: SqueezeSam, images: torch.Tensor):
    """``decode`` of :func:`training_round` for SqueezeSAM with ``feed_previous_masks``: the images
    are preprocessed once, each query runs the whole network on its own fused input; the previous
    round's logits go to the previous-mask channel when the model has one."""
    preprocessed, size = model.preprocess(images), model.img_size

    def decode_one(b: int, points: torch.Tensor, labels: torch.Tensor, previous: Optional[torch.Tensor]):
        fed = previous[None] if model.previous_mask_channel and previous is not None else None
        logits, iou = model.predict_masks(preprocessed[b:b + 1], points[None], labels[None], size, size, fed)
        return logits[0], iou[0]
    return per_image(decode_one)


@MODELS.register_module()
class SqueezeSamTrainer(PromptableTrainer):
    """Wraps :func:`build_squeeze_sam` (the exact inference model) for SAM-style training.

    Each step runs :func:`training_round`: a box or a click (on the sample's ``click_masks``: one
    part of a merged target) plus the sample's outlier clicks (negative with the model's
    ``negative_click_channel``, else positive, so the model learns to ignore them), then
    ``num_iterative_clicks`` clicks from the error region (negative ones only with that channel),
    the previous mask fed back with ``previous_mask_channel``; focal + dice of the best of the 3
    masks and the IoU MSE. Prompt randomness is keyed by ``seed``, the iteration and the rank, so a
    resumed run draws the same prompts.

    ``teacher``: ``dict(kind='efficientsam'|'sam', checkpoint=..., config=..., weight=1.0,
    cache_dir=None)`` supervises with the frozen teacher's masks for the same prompts (``weight``
    1: alone; in (0, 1): mixed with the ground truth); it stays out of checkpoints, and
    ``cache_dir`` stores its image embeddings per image view (:class:`TeacherFeatureCache`).
    ``checkpoint`` initialises the whole model strictly (an export of an earlier run).
    """

    def __init__(self, model_config: Union[str, Mapping[str, Any]] = 'base', checkpoint: Optional[str] = None,
                 box_probability: float = 0.5, num_iterative_clicks: int = 4,
                 loss_weights: Optional[Mapping[str, float]] = None, teacher: Optional[Mapping[str, Any]] = None,
                 eval_protocol: Optional[Mapping[str, Any]] = None, seed: int = 0,
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(box_probability, loss_weights, eval_protocol, data_preprocessor, init_cfg)
        if num_iterative_clicks < 0:
            raise ValueError(f'num_iterative_clicks must be >= 0, got {num_iterative_clicks}')
        self.model_config = resolve_config(model_config)
        self.model = build_squeeze_sam(self.model_config).train()
        self.checkpoint, self.num_iterative_clicks, self.seed = checkpoint, num_iterative_clicks, seed
        self.teacher_slot: Optional[TeacherSlot] = None
        self.teacher_weight, self.teacher_cache = 0.0, None
        if teacher:
            options = dict(teacher)
            unknown = sorted(set(options) - {'kind', 'checkpoint', 'config', 'weight', 'cache_dir'})
            if unknown:
                raise ValueError(f'unknown teacher keys {unknown}; expected kind, checkpoint, config, weight, '
                                 f'cache_dir')
            self.teacher_weight = float(options.get('weight', 1.0))
            if not 0.0 < self.teacher_weight <= 1.0:
                raise ValueError(f'teacher weight must be in (0, 1], got {self.teacher_weight}')
            built = build_mask_teacher(options.get('kind', 'efficientsam'), options.get('checkpoint'),
                                       options.get('config'))
            self.teacher_slot = TeacherSlot(built)
            if options.get('cache_dir'):  # verified now, before the first iteration
                self.teacher_cache = TeacherFeatureCache(options['cache_dir'], dict(teacher=built.describe())).check()
        self._calls = 0

    @property
    def teacher(self):
        return None if self.teacher_slot is None else self.teacher_slot.teacher

    def init_weights(self) -> None:
        super().init_weights()
        if self.checkpoint:
            load_prefixed(self.model, self.checkpoint, '', what='SqueezeSAM')

    def embed(self, inputs):
        return self.model.preprocess(inputs)

    def segmenter(self) -> PredictorSegmenter:
        return PredictorSegmenter(SqueezeSamPredictor(self.model))

    def _generator(self, device: torch.device) -> torch.Generator:
        step = int(MessageHub.get_current_instance().get_info('iter', self._calls))
        self._calls += 1
        return torch.Generator(device).manual_seed((self.seed * 1_000_003 + step) * 4099 + get_rank())

    def _outlier_prompts(self, sample: Mapping[str, Any], device: torch.device):
        points, valid = sample['outlier_points'].to(device).float(), sample['outlier_valid'].to(device)
        label = LABEL_NEGATIVE if self.model.negative_click_channel else LABEL_POINT
        labels = torch.where(valid, float(label), float(LABEL_PADDING))
        return torch.where(valid[..., None], points, -1.0), labels

    def loss(self, inputs: torch.Tensor, data_samples: Sequence[dict]) -> Dict[str, torch.Tensor]:
        size = self.check_training_inputs(
            inputs, 'set ResizeToModelInput(img_size=...) to the model\'s encoder_image_size')
        masks = [s['gt_masks'] for s in data_samples]
        click_masks = [s.get('click_masks', s['gt_masks']) for s in data_samples]
        has_outliers = ['outlier_points' in s for s in data_samples]
        extra = [self._outlier_prompts(s, inputs.device) for s in data_samples] if all(has_outliers) else None
        teacher = None
        if self.teacher is not None:
            keys = [f'{s.get("img_path", "")}|{tuple(s.get("crop_box", ()))}|{size}' for s in data_samples]
            teacher = bind_teacher(self.teacher, inputs, size, masks[0].shape[-1], keys, self.teacher_cache)
        return training_round(squeeze_sam_decoder(self.model, inputs), masks, size, self.box_probability,
                              self.num_iterative_clicks, self.loss_weights, self.model.mask_threshold,
                              self._generator(inputs.device), self.model.negative_click_channel,
                              click_masks=click_masks, extra_prompts=extra, feed_previous_masks=True,
                              teacher=teacher, teacher_weight=self.teacher_weight)


@HOOKS.register_module()
class SqueezeSamExportHook(EfficientSamExportHook):
    """Writes ``<out_dir or work_dir>/<filename>`` (+ ``.config.json``) after training, loadable by
    :func:`build_squeeze_sam` and :class:`SqueezeSamPredictor`; the teacher is never part of it."""

    label = 'SqueezeSAM checkpoint'

    def __init__(self, filename: str = 'squeezesam_trained.pt', out_dir: Optional[str] = None) -> None:
        super().__init__(filename, out_dir)


__all__ = ['SqueezeSamTrainer', 'SqueezeSamSA1BDataset', 'SqueezeSamExportHook', 'squeeze_sam_decoder']
