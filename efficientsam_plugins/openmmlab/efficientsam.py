"""EfficientSAM finetuning on SA-1B: ``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.efficientsam'])``.

Registers in mmengine's root registries (``default_scope='mmengine'``): ``EfficientSamFinetuner`` and
``EfficientSamDataPreprocessor`` (MODELS), ``EfficientSamSA1BDataset`` (DATASETS),
``efficientsam_collate`` (FUNCTIONS), ``EfficientSamExportHook`` (HOOKS) and
``EfficientSamPromptableMetric`` (METRICS).
"""
from mmengine.registry import DATASETS, FUNCTIONS

from .checkpoints import enable_weights_only_checkpoints
from .finetune import EfficientSamDataPreprocessor, EfficientSamFinetuner
from .hooks import EfficientSamExportHook
from .metric import PromptableIoUMetric
from .sa1b import SA1BDataset, efficientsam_collate

DATASETS.register_module(name='EfficientSamSA1BDataset', module=SA1BDataset)
FUNCTIONS.register_module(name='efficientsam_collate', module=efficientsam_collate)
enable_weights_only_checkpoints()  # SAMI pretraining checkpoints (encoder init) are mmengine checkpoints

__all__ = ['SA1BDataset', 'efficientsam_collate', 'EfficientSamFinetuner', 'EfficientSamDataPreprocessor',
           'EfficientSamExportHook', 'PromptableIoUMetric']
