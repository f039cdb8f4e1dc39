"""SqueezeSAM training on SA-1B / COCO with whole-object augmentations and optional distillation:
``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.squeezesam'])``.

Registers in mmengine's root registries (``default_scope='mmengine'``): ``SqueezeSamTrainer``
(MODELS), ``SqueezeSamSA1BDataset`` (DATASETS), ``SqueezeSamExportHook`` (HOOKS), the transforms of
:mod:`.whole_object` (TRANSFORMS), plus everything :mod:`.efficientsam` registers (its data
preprocessor, dataset, collate function and promptable metric, which SqueezeSAM reuses).
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS

from ..evaluation.promptable import PromptProtocol
from ..evaluation.segmenters import PredictorSegmenter
from ..fileio import atomic_write_json
from ..models.checkpoint import load_prefixed, save_checkpoint
from ..models.convert import config_path_of
from ..models.efficient_sam.training import LOSS_WEIGHTS, training_round
from ..models.predictor import LABEL_NEGATIVE, LABEL_PADDING, LABEL_POINT
from ..models.sami.teachers import TeacherSlot
from ..models.squeeze_sam import SqueezeSam, SqueezeSamPredictor, build_squeeze_sam, resolve_config
from ..models.squeeze_sam.distill import TeacherEmbeddingCache, bind_teacher, build_mask_teacher
from . import efficientsam  # noqa: F401  (registers the shared data preprocessor, dataset, collate, metric)
from .finetune import promptable_records
from .hooks import EfficientSamExportHook
from .whole_object import SqueezeSamSA1BDataset

DATASETS.register_module(name='SqueezeSamSA1BDataset', module=SqueezeSamSA1BDataset)


def squeeze_sam_decoder(model: SqueezeSam, images: torch.Tensor):
    """``decode`` of :func:`training_round` for SqueezeSAM with ``feed_previous_masks``: the images
    are preprocessed once, each query runs the whole network on its own fused input; the previous
    round's logits go to the previous-mask channel when the model has one."""
    preprocessed = model.preprocess(images)
    size = model.img_size

    def decode(points: List[torch.Tensor], labels: List[torch.Tensor], previous: Optional[torch.Tensor]):
        chunks = previous.split([len(p) for p in points]) if previous is not None else [None] * len(points)
        outputs = [model.predict_masks(preprocessed[b:b + 1], points[b][None], labels[b][None], size, size,
                                       chunks[b][None] if model.previous_mask_channel and chunks[b] is not None
                                       else None)
                   for b in range(len(points))]
        return torch.cat([logits[0] for logits, _ in outputs]), torch.cat([iou[0] for _, iou in outputs])
    return decode


@MODELS.register_module(name='SqueezeSamTrainer')
class SqueezeSamTrainer(BaseModel):
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
    ``cache_dir`` stores its image embeddings per image view (:class:`TeacherEmbeddingCache`).
    ``checkpoint`` initialises the whole model strictly (an export of an earlier run).
    """

    def __init__(self, model_config: Union[str, Mapping[str, Any]] = 'base', checkpoint: Optional[str] = None,
                 box_probability: float = 0.5, num_iterative_clicks: int = 4,
                 loss_weights: Optional[Mapping[str, float]] = None, teacher: Optional[Mapping[str, Any]] = None,
                 eval_protocol: Optional[Mapping[str, Any]] = None, seed: int = 0,
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type='EfficientSamDataPreprocessor'),
                         init_cfg=init_cfg)
        self.model_config = resolve_config(model_config)
        self.model = build_squeeze_sam(self.model_config).train()
        if not 0.0 <= box_probability <= 1.0:
            raise ValueError(f'box_probability must be in [0, 1], got {box_probability}')
        if num_iterative_clicks < 0:
            raise ValueError(f'num_iterative_clicks must be >= 0, got {num_iterative_clicks}')
        unknown = sorted(set(loss_weights or {}) - set(LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f'unknown loss_weights keys {unknown}; expected focal, dice, iou')
        self.loss_weights = {k: float(v) for k, v in {**LOSS_WEIGHTS, **(loss_weights or {})}.items()}
        self.checkpoint, self.box_probability = checkpoint, box_probability
        self.num_iterative_clicks, self.seed = num_iterative_clicks, seed
        self.eval_protocol = PromptProtocol(**(eval_protocol or {}))
        self.teacher_slot: Optional[TeacherSlot] = None
        self.teacher_weight, self.teacher_cache = 0.0, None
        if teacher:
            options = dict(teacher)
            unknown = sorted(set(options) - {'kind', 'checkpoint', 'config', 'weight', 'cache_dir'})
            if unknown:
                raise ValueError(f'unknown teacher keys {unknown}; expected kind, checkpoint, config, weight, cache_dir')
            self.teacher_weight = float(options.get('weight', 1.0))
            if not 0.0 < self.teacher_weight <= 1.0:
                raise ValueError(f'teacher weight must be in (0, 1], got {self.teacher_weight}')
            built = build_mask_teacher(options.get('kind', 'efficientsam'), options.get('checkpoint'),
                                       options.get('config'))
            self.teacher_slot = TeacherSlot(built)
            if options.get('cache_dir'):
                self.teacher_cache = TeacherEmbeddingCache(options['cache_dir'], built.description)
        self._calls = 0

    @property
    def teacher(self):
        return None if self.teacher_slot is None else self.teacher_slot.teacher

    def init_weights(self) -> None:
        super().init_weights()
        if self.checkpoint:
            load_prefixed(self.model, self.checkpoint, '', what='SqueezeSAM')

    def forward(self, inputs, data_samples: Optional[List[dict]] = None, mode: str = 'tensor'):
        if mode in ('loss', 'predict'):
            return getattr(self, mode)(inputs, data_samples)
        if mode == 'tensor':
            return self.model.preprocess(inputs)
        raise ValueError(f'unknown mode {mode!r}; expected loss, predict or tensor')

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
        size = self.model.img_size
        if not isinstance(inputs, torch.Tensor) or inputs.shape[-2:] != (size, size):
            shapes = [tuple(x.shape) for x in inputs] if isinstance(inputs, list) else tuple(inputs.shape)
            raise ValueError(f'training images must all be {size}x{size} (the model input); got {shapes}: '
                             f'set ResizeToModelInput(img_size=...) to the model\'s encoder_image_size')
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

    @torch.no_grad()
    def predict(self, inputs, data_samples: Sequence[dict]) -> List[Dict[str, Any]]:
        """Promptable evaluation with :attr:`eval_protocol` through :class:`SqueezeSamPredictor`:
        the records :class:`~efficientsam_plugins.openmmlab.metric.PromptableIoUMetric` aggregates."""
        return promptable_records(self.model, PredictorSegmenter(SqueezeSamPredictor(self.model)), inputs,
                                  data_samples, self.eval_protocol)


def save_squeeze_sam(state_dict: Mapping[str, torch.Tensor], path: str, config: Mapping[str, Any]) -> str:
    """``{"model": state_dict}`` (the official key names) and the full architecture in
    ``<path>.config.json``: ``build_squeeze_sam(json.load(config), path)`` rebuilds it."""
    save_checkpoint({'model': {k: v.detach().cpu() for k, v in state_dict.items()}}, path)
    atomic_write_json(config_path_of(path), resolve_config(config), indent=2)
    return path


@HOOKS.register_module(name='SqueezeSamExportHook')
class SqueezeSamExportHook(EfficientSamExportHook):
    """Writes ``<out_dir or work_dir>/<filename>`` (+ ``.config.json``) after training, loadable by
    :func:`build_squeeze_sam` and :class:`SqueezeSamPredictor`; the teacher is never part of it."""

    def __init__(self, filename: str = 'squeezesam_trained.pt', out_dir: Optional[str] = None) -> None:
        super().__init__(filename, out_dir)

    def save(self, model, path: str) -> None:
        save_squeeze_sam(model.model.state_dict(), path, model.model_config)
        print_log(f'SqueezeSAM checkpoint saved to {path}', logger='current')


__all__ = ['SqueezeSamTrainer', 'SqueezeSamSA1BDataset', 'SqueezeSamExportHook', 'squeeze_sam_decoder',
           'save_squeeze_sam']
