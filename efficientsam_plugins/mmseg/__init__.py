"""mmseg adapter: the SAMI ViT backbone, the simple pyramid neck and a COCO-semantic dataset.

Use from a config with ``custom_imports=dict(imports=['mmdet.models', 'efficientsam_plugins.mmseg'])``
(Mask2Former's head comes from mmdet). The classes are the ones the mmdet adapter registers, so
detection and segmentation share one backbone, one pyramid and one checkpoint loader. The
layer-decay constructor lives in mmengine's root registry and is found from every scope.
"""
from mmseg.registry import DATASETS, MODELS

from ..mmcommon import SAMILayerDecayOptimWrapperConstructor, SAMISimpleFPN, SAMIViT
from ..models.vit import LayerNorm2d
from .datasets import SAMICocoSemanticDataset

MODELS.register_module(module=SAMIViT)
MODELS.register_module(module=SAMISimpleFPN)
# The pyramid's channel LayerNorm, for heads configured with norm_cfg=dict(type='LN2d').
MODELS.register_module('LN2d', module=LayerNorm2d)
DATASETS.register_module(module=SAMICocoSemanticDataset)

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMILayerDecayOptimWrapperConstructor', 'SAMICocoSemanticDataset']
