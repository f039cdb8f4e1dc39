"""mmpretrain: ``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.mmpretrain'])``.

Registers SAMI (algorithm, student backbone, decoder neck, head, loss, teachers), its pipeline
steps, the backbone as a classifier's (``out_type='avg_featmap'``) and a small COCO dataset.
"""
from .backbone import SAMIViT
from .checkpoints import enable_weights_only_checkpoints
from .datasets import COCOMainObjectDataset
from .hooks import MeanLossOverRanksHook
from .layer_decay import SAMILayerDecayOptimWrapperConstructor
from .sami import SAMI, SAMIHead
from .transforms import LoadSAMITeacherTarget, SAMIRandomResizedCrop

enable_weights_only_checkpoints()

__all__ = ['SAMI', 'SAMIHead', 'SAMIViT', 'COCOMainObjectDataset', 'LoadSAMITeacherTarget',
           'SAMIRandomResizedCrop', 'MeanLossOverRanksHook', 'SAMILayerDecayOptimWrapperConstructor']
