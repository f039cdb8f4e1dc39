"""Pieces shared by the OpenMMLab adapters (mmdet, mmseg): backbone, pyramid neck, layer decay.

Each adapter package registers these same classes in its toolbox's registries; nothing here
re-implements the core, it only wraps :mod:`efficientsam_plugins.models`.
"""
from ..mmengine.checkpoints import enable_weights_only_checkpoints
from .backbone import SAMIViT
from .layer_decay import SAMILayerDecayOptimWrapperConstructor, layer_decay_scale
from .neck import SAMISimpleFPN
from .zoo_scheme import load_from_zoo

# Checkpoints written by mmdet/mmseg runs must load back with torch's safe loader (torch >= 2.6).
enable_weights_only_checkpoints()

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMILayerDecayOptimWrapperConstructor', 'layer_decay_scale',
           'load_from_zoo']
