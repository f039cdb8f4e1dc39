"""mmdet: ``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.mmdet'])``.

Registers the SAMI ViT backbone, the simple pyramid neck and ``LayerNorm2d`` (the channel LayerNorm
of ViTDet's heads, which mmdet itself does not register) in mmengine's root MODELS, which mmdet's
searches, and ``SAMIDetDataPreprocessor`` (square padding of test batches) in mmdet's MODELS.
"""
from typing import Optional, Sequence

from mmdet.models.data_preprocessors import BatchFixedSizePad, DetDataPreprocessor
from mmdet.registry import MODELS

from .backbone import SAMIViT
from .checkpoints import enable_weights_only_checkpoints
from .layer_decay import SAMILayerDecayOptimWrapperConstructor
from .neck import SAMISimpleFPN


@MODELS.register_module()
class SAMIDetDataPreprocessor(DetDataPreprocessor):
    """``DetDataPreprocessor`` that also pads test batches to ``test_pad_size`` (h, w), bottom and right.

    ViTDet trains on 1024x1024 LSJ crops, so absolute position embeddings and the global blocks'
    relative-position tables only ever see a 64x64 token grid; a 1024x683 test image would reach
    the ViT as 64x43. Padding here rather than with the pipeline's ``Pad`` keeps ``img_shape`` the
    real image (``Pad`` widens it to the square), so predicted boxes are still clipped to the image.
    Like training's ``BatchFixedSizePad``, the padding is zero after normalisation.
    """

    def __init__(self, test_pad_size: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if test_pad_size is not None and (len(test_pad_size) != 2 or min(test_pad_size) < 1):
            raise ValueError(f'test_pad_size must be (height, width) with positive sides, got {test_pad_size!r}')
        self.test_pad = None if test_pad_size is None else BatchFixedSizePad(tuple(test_pad_size))

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if not training and self.test_pad is not None:
            data['inputs'], data['data_samples'] = self.test_pad(data['inputs'], data['data_samples'])
        return data


enable_weights_only_checkpoints()

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMIDetDataPreprocessor', 'SAMILayerDecayOptimWrapperConstructor']
