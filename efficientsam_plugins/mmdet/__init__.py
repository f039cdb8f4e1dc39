"""mmdet adapter: registers the SAMI ViT backbone and the simple pyramid neck in mmdet's MODELS.

Use from a config with ``custom_imports=dict(imports=['efficientsam_plugins.mmdet'])``. The
layer-decay constructor lives in mmengine's root registry and is found from every scope.
"""
from mmdet.registry import MODELS

from ..mmcommon import SAMILayerDecayOptimWrapperConstructor, SAMISimpleFPN, SAMIViT
from ..models.vit import LayerNorm2d

MODELS.register_module(module=SAMIViT)
MODELS.register_module(module=SAMISimpleFPN)
# ViTDet's heads normalise with a channel LayerNorm ('LN2d'), which mmdet itself does not register.
MODELS.register_module('LN2d', module=LayerNorm2d)

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMILayerDecayOptimWrapperConstructor']
