"""mmdet: ``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.mmdet'])``.

Registers the SAMI ViT backbone and the simple pyramid neck in mmdet's MODELS, and ``LN2d`` (the
channel LayerNorm of ViTDet's heads, which mmdet itself does not register).
"""
from mmdet.registry import MODELS

from ..models.vit import LayerNorm2d
from .backbone import SAMIViT
from .checkpoints import enable_weights_only_checkpoints
from .layer_decay import SAMILayerDecayOptimWrapperConstructor
from .neck import SAMISimpleFPN

MODELS.register_module(module=SAMIViT)
MODELS.register_module(module=SAMISimpleFPN)
MODELS.register_module('LN2d', module=LayerNorm2d)
enable_weights_only_checkpoints()

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMILayerDecayOptimWrapperConstructor']
