"""EfficientSAM behind the common predictor interface (:mod:`efficientsam_plugins.models.predictor`)."""
from typing import Optional

import torch

from ..predictor import Predictor
from .efficient_sam import EfficientSam, build_efficient_sam


class EfficientSamPredictor(Predictor):
    """Embeds the image once in :meth:`set_image`; all queries of a :meth:`predict` call share that
    embedding (it is never copied per query) and are decoded in chunks of ``max_queries_per_batch``.
    Negative clicks (label 0) are accepted when the model was built with ``negative_points``."""

    model_name = 'EfficientSAM'

    def __init__(self, model: EfficientSam, max_queries_per_batch: int = 64,
                 precision: str = 'fp32') -> None:
        super().__init__(max_queries_per_batch, precision)
        self.model = model.eval()
        self.mask_threshold = model.mask_threshold
        self.max_points_per_query = model.decoder_max_num_input_points
        self.supports_negative_points = model.prompt_encoder.supports_negative_points
        self.image_embedding: Optional[torch.Tensor] = None

    @classmethod
    def from_pretrained(cls, name='efficientsam_ti', checkpoint=None, device='cpu',
                        **kwargs) -> 'EfficientSamPredictor':
        """A predictor on ``device`` for a model-zoo name (``'efficientsam_ti'``: the released weights,
        downloaded once and verified) or a config plus checkpoint (``'ti', 'path/to.pt'``)."""
        from ...zoo import list_entries
        zoo_configs = {e.name: e.arch.config for e in list_entries() if e.arch and e.arch.family == 'efficientsam'}
        if isinstance(name, str) and name in zoo_configs:  # the zoo entry carries its architecture
            name, checkpoint = zoo_configs[name], checkpoint or f'zoo://{name}'
        return cls(build_efficient_sam(name, checkpoint).to(device), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    def reset_image(self) -> None:
        super().reset_image()
        self.image_embedding = None

    def _set_image(self, image: torch.Tensor) -> None:
        self.image_embedding = self.model.get_image_embeddings(image[None].to(self.device))

    def _decode(self, points: torch.Tensor, labels: torch.Tensor, multimask_output: bool):
        h, w = self.original_size
        logits, iou = self.model.predict_masks(self.image_embedding, points[None], labels[None],
                                               multimask_output, h, w)
        return logits[0], iou[0]
