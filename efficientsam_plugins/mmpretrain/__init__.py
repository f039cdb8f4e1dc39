"""mmpretrain adapter: registers SAMI (algorithm, student backbone, decoder neck, head, loss,
teachers), its pipeline steps and a small COCO dataset. Import it through the configs'
``custom_imports=dict(imports=['efficientsam_plugins.mmpretrain'])``.

Importing it also lets mmengine checkpoints load under torch's ``weights_only`` default.
"""
from ..mmengine import MeanLossOverRanksHook, enable_weights_only_checkpoints
from .backbone import SAMIViT
from .datasets import COCOMainObjectDataset
from .sami import SAMI, SAMIHead
from .transforms import LoadSAMITeacherTarget, SAMIRandomResizedCrop

enable_weights_only_checkpoints()

__all__ = ['SAMI', 'SAMIHead', 'SAMIViT', 'COCOMainObjectDataset', 'LoadSAMITeacherTarget',
           'SAMIRandomResizedCrop', 'MeanLossOverRanksHook']
