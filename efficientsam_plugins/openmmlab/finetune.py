"""EfficientSAM finetuning as an mmengine model: prompts sampled from ground-truth masks, SAM's
loss, and promptable mIoU evaluation through the shared evaluation code."""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.registry import MODELS

from ..build import build_efficient_sam
from ..checkpoint import load_prefixed
from ..convert import load_encoder_weights
from ..evaluation.dataset import ImageInfo, Instance
from ..evaluation.promptable import PromptProtocol, evaluate_image
from ..evaluation.segmenters import PredictorSegmenter
from ..modeling.efficient_sam import resolve_config
from ..predictor import EfficientSamPredictor
from ..training.sam_round import LOSS_WEIGHTS, efficient_sam_decoder, training_round


@MODELS.register_module()
class EfficientSamDataPreprocessor(BaseDataPreprocessor):
    """Moves a batch to the device, images to float [0, 1] (the model normalises them itself),
    stacked into ``[B, 3, S, S]`` when they share one size, else kept as a list (evaluation)."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        images = [img.float() / 255 if img.dtype == torch.uint8 else img.float() for img in data['inputs']]
        if len({tuple(img.shape) for img in images}) == 1:
            images = torch.stack(images)
        return dict(inputs=images, data_samples=data['data_samples'])


class PromptableTrainer(BaseModel):
    """What both trainers share: the data preprocessor, SAM's loss weights, the box/click choice,
    the mode dispatch, the input-size check and promptable evaluation with :attr:`eval_protocol`
    (:class:`PromptProtocol` arguments; default: the paper's clicks). Subclasses set ``model``."""

    def __init__(self, box_probability: float, loss_weights: Optional[Mapping[str, float]],
                 eval_protocol: Optional[Mapping[str, Any]],
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]], init_cfg: Optional[dict]) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type='EfficientSamDataPreprocessor'),
                         init_cfg=init_cfg)
        if not 0.0 <= box_probability <= 1.0:
            raise ValueError(f'box_probability must be in [0, 1], got {box_probability}')
        unknown = sorted(set(loss_weights or {}) - set(LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f'unknown loss_weights keys {unknown}; expected focal, dice, iou')
        self.box_probability = box_probability
        self.loss_weights = {k: float(v) for k, v in {**LOSS_WEIGHTS, **(loss_weights or {})}.items()}
        self.eval_protocol = PromptProtocol(**(eval_protocol or {}))

    def forward(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[List[dict]] = None, mode: str = 'tensor'):
        if mode in ('loss', 'predict'):
            return getattr(self, mode)(inputs, data_samples)
        if mode == 'tensor':
            return self.embed(inputs)
        raise ValueError(f'unknown mode {mode!r}; expected loss, predict or tensor')

    def check_training_inputs(self, inputs, hint: str) -> int:
        """The model's input side, after checking that the batch is stacked at that size."""
        size = self.model.img_size
        if not isinstance(inputs, torch.Tensor) or inputs.shape[-2:] != (size, size):
            shapes = [tuple(x.shape) for x in inputs] if isinstance(inputs, list) else tuple(inputs.shape)
            raise ValueError(f'training images must all be {size}x{size} (the model input); got {shapes}: {hint}')
        return size

    @torch.no_grad()
    def predict(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Sequence[dict]) -> List[Dict[str, Any]]:
        """The per-image records that :class:`~efficientsam_plugins.openmmlab.metric.PromptableIoUMetric`
        aggregates (the segmenter puts the model in eval mode; its training mode is restored)."""
        was_training, segmenter, outputs = self.model.training, self.segmenter(), []
        try:
            for image, sample in zip(inputs, data_samples):
                gt = sample['gt_masks'].cpu().numpy()
                instances = [Instance(int(a), int(c), m, int(m.sum()))
                             for a, c, m in zip(sample['annotation_ids'], sample['category_ids'], gt)]
                info = ImageInfo(int(sample['image_id']), sample.get('img_path', ''), gt.shape[-1], gt.shape[-2])
                outputs.append(dict(image_id=info.id,
                                    records=evaluate_image(segmenter, info, image, instances, self.eval_protocol)))
        finally:
            self.model.train(was_training)
        return outputs


@MODELS.register_module()
class EfficientSamFinetuner(PromptableTrainer):
    """Wraps :func:`build_efficient_sam` (the exact inference model) for training.

    ``checkpoint`` is a whole EfficientSAM checkpoint (official layout); ``encoder_init`` /
    ``decoder_init`` are ``dict(checkpoint=..., prefix=...)`` plus optional ``allow_missing`` /
    ``ignore_unexpected`` key prefixes for the image encoder (:func:`load_encoder_weights`: a SAMI
    run's checkpoint with ``prefix='backbone.'``, its final norm dropped and the neck trained from
    scratch; EfficientSAM: ``'image_encoder.'``) and for the prompt encoder + mask decoder
    (:func:`load_prefixed`, ``prefix=''``; None trains them from scratch). A model built with
    ``negative_points`` keeps its new negative-click embedding initialised when a checkpoint lacks it.

    ``num_iterative_clicks`` (None: as many as the decoder takes after a box when the decoder trains
    from scratch or learns negative clicks, as SAM's recipe; else 0), negative clicks (when the model
    has them) and ``loss_weights`` go to :func:`training_round`.
    """

    def __init__(self, model_config: Union[str, Mapping[str, Any]] = 'ti', checkpoint: Optional[str] = None,
                 encoder_init: Optional[Mapping[str, Any]] = None,
                 decoder_init: Optional[Mapping[str, Any]] = None, box_probability: float = 0.5,
                 num_iterative_clicks: Optional[int] = None, loss_weights: Optional[Mapping[str, float]] = None,
                 eval_protocol: Optional[Mapping[str, Any]] = None,
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(box_probability, loss_weights, eval_protocol, data_preprocessor, init_cfg)
        self.model_config = resolve_config(model_config)
        self.model = build_efficient_sam(self.model_config).train()
        max_clicks = self.model.decoder_max_num_input_points - 2
        self.negative_clicks = self.model.prompt_encoder.supports_negative_points
        if num_iterative_clicks is None:
            from_scratch = checkpoint is None and decoder_init is None
            num_iterative_clicks = max_clicks if from_scratch or self.negative_clicks else 0
        if self.negative_clicks and num_iterative_clicks == 0:
            raise ValueError('negative_points needs num_iterative_clicks >= 1: only iterative clicks on false '
                             'positives train the negative-click embedding')
        if not 0 <= num_iterative_clicks <= max_clicks:
            raise ValueError(f'num_iterative_clicks must be in [0, {max_clicks}]: a box takes 2 of the '
                             f'decoder\'s {self.model.decoder_max_num_input_points} points')
        self.checkpoint, self.encoder_init, self.decoder_init = checkpoint, encoder_init, decoder_init
        self.num_iterative_clicks = num_iterative_clicks

    def init_weights(self) -> None:
        """Loads ``checkpoint``, then ``encoder_init`` and ``decoder_init`` (the runner calls this
        before training; a resumed run overwrites it with its own checkpoint)."""
        super().init_weights()
        new_keys = ('negative_point_embeddings.',) if self.negative_clicks else ()
        initialised = []
        if self.checkpoint:
            initialised += load_prefixed(self.model, self.checkpoint, '', what='EfficientSAM',
                                         allow_missing=tuple(f'prompt_encoder.{k}' for k in new_keys))
        if self.encoder_init:
            cfg = dict(self.encoder_init)
            initialised += [f'image_encoder.{k}' for k in load_encoder_weights(
                self.model.image_encoder, cfg.pop('checkpoint'), cfg.pop('prefix', 'image_encoder.'), **cfg)]
        if self.decoder_init:
            cfg = dict(self.decoder_init)
            checkpoint, prefix = cfg.pop('checkpoint'), cfg.pop('prefix', '')
            allow_missing = tuple(cfg.pop('allow_missing', ()))
            for part in ('prompt_encoder', 'mask_decoder'):
                extra = new_keys if part == 'prompt_encoder' else ()
                initialised += [f'{part}.{k}' for k in load_prefixed(
                    getattr(self.model, part), checkpoint, f'{prefix}{part}.', (*allow_missing, *extra),
                    what=part.replace('_', ' '), **cfg)]
        if initialised:
            print_log(f'EfficientSamFinetuner: initialised, not loaded: {", ".join(initialised)}', logger='current')

    def embed(self, inputs):
        return self.model.get_image_embeddings(inputs)

    def segmenter(self) -> PredictorSegmenter:
        return PredictorSegmenter(EfficientSamPredictor(self.model))

    def loss(self, inputs: torch.Tensor, data_samples: Sequence[dict]) -> Dict[str, torch.Tensor]:
        """SAM's training round (:func:`training_round`); the images are embedded once."""
        size = self.check_training_inputs(inputs, 'set the dataset\'s img_size to the model\'s')
        return training_round(efficient_sam_decoder(self.model, inputs), [s['gt_masks'] for s in data_samples],
                              size, self.box_probability, self.num_iterative_clicks, self.loss_weights,
                              self.model.mask_threshold, negative_clicks=self.negative_clicks)

