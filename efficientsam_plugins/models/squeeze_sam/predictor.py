"""SqueezeSAM behind the common predictor interface (:mod:`efficientsam_plugins.models.predictor`)."""
import warnings
from typing import Optional

import torch

from ..predictor import Predictor
from .squeeze_sam import SqueezeSam, build_squeeze_sam

RANDOM_WEIGHTS_WARNING = ("SqueezeSAM's trained weights were never published and no checkpoint was given: "
                          'running with RANDOM weights, so the masks are meaningless')


class SqueezeSamPredictor(Predictor):
    """Keeps the resized, normalised image from :meth:`set_image`; every query runs the whole
    network on its own fused input, ``max_queries_per_batch`` queries at a time (activation memory
    grows with that number: about 0.13 GB per query at 512x512, measured on CPU).

    ``multimask_output=False`` returns the candidate with the highest predicted IoU: SqueezeSAM
    drops SAM's single-mask token. Label-0 points are accepted only when the model was built with
    ``negative_click_channel``.
    """

    model_name = 'SqueezeSAM'

    def __init__(self, model: SqueezeSam, max_queries_per_batch: int = 8,
                 precision: str = 'fp32') -> None:
        super().__init__(max_queries_per_batch, precision)
        self.model = model.eval()
        self.mask_threshold = model.mask_threshold
        self.supports_negative_points = model.negative_click_channel
        self.image: Optional[torch.Tensor] = None

    @classmethod
    def from_pretrained(cls, name='squeezesam', checkpoint=None, device='cpu', **kwargs) -> 'SqueezeSamPredictor':
        """A predictor on ``device`` for a model-zoo name of a SqueezeSAM entry (the zoo holds none
        unless a user manifest adds one: the weights were never public) or a config plus checkpoint
        (``'base', 'path/to.pt'``). ``'squeezesam'`` without a zoo entry or checkpoint builds
        ``'base'`` on random weights, with a warning."""
        from ...zoo import list_entries
        zoo_configs = {e.name: e.arch.config for e in list_entries() if e.arch and e.arch.family == 'squeezesam'}
        if isinstance(name, str) and name in zoo_configs:  # the zoo entry carries its architecture
            name, checkpoint = zoo_configs[name] or 'base', checkpoint or f'zoo://{name}'
        elif name == 'squeezesam' and checkpoint is None:
            warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
        return cls(build_squeeze_sam(name, checkpoint).to(device), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.early_fusion.pixel_mean.device

    def reset_image(self) -> None:
        super().reset_image()
        self.image = None

    def _set_image(self, image: torch.Tensor) -> None:
        self.image = self.model.preprocess(image[None].to(self.device))

    def _decode(self, points: torch.Tensor, labels: torch.Tensor, multimask_output: bool):
        h, w = self.original_size
        logits, iou = self.model.predict_masks(self.image, points[None], labels[None], h, w)
        logits, iou = logits[0], iou[0]
        if not multimask_output:
            best = iou.argmax(1, keepdim=True)
            logits, iou = torch.take_along_dim(logits, best[..., None, None], 1), iou.gather(1, best)
        return logits, iou
