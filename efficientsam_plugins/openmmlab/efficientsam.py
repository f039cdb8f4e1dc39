"""EfficientSAM finetuning on SA-1B: ``custom_imports=dict(imports=['efficientsam_plugins.openmmlab.efficientsam'])``.

Registers in mmengine's root registries (``default_scope='mmengine'``): ``EfficientSamFinetuner`` and
``EfficientSamDataPreprocessor`` (MODELS), ``SA1BDataset`` (DATASETS),
``efficientsam_collate`` (FUNCTIONS), ``EfficientSamExportHook`` (HOOKS) and
``PromptableIoUMetric`` (METRICS).
"""
from .checkpoints import enable_weights_only_checkpoints
from .finetune import EfficientSamDataPreprocessor, EfficientSamFinetuner
from .hooks import EfficientSamExportHook
from .metric import PromptableIoUMetric
from .sa1b import SA1BDataset, efficientsam_collate

enable_weights_only_checkpoints()  # SAMI pretraining checkpoints (encoder init) are mmengine checkpoints

__all__ = ['SA1BDataset', 'efficientsam_collate', 'EfficientSamFinetuner', 'EfficientSamDataPreprocessor',
           'EfficientSamExportHook', 'PromptableIoUMetric']
