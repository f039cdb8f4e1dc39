"""EfficientSAM finetuning on SA-1B with mmengine (configs: ``configs/efficientsam/``).

Importing this package registers, in mmengine's root registries (``default_scope='mmengine'``):
``EfficientSamFinetuner`` and ``EfficientSamDataPreprocessor`` (MODELS), ``EfficientSamSA1BDataset``
(DATASETS), ``efficientsam_collate`` (FUNCTIONS), ``EfficientSamExportHook`` (HOOKS) and, from
:mod:`efficientsam_plugins.evaluation.metric`, ``EfficientSamPromptableMetric`` (METRICS).
"""
try:
    import mmengine  # noqa: F401
except ImportError as err:
    raise ImportError('efficientsam_plugins.finetune needs mmengine: pip install mmengine '
                      '(pinned in requirements.txt)') from err

from mmengine.registry import DATASETS, FUNCTIONS

from ..evaluation.metric import PromptableIoUMetric
from .data import SA1BDataset, efficientsam_collate
from .hooks import EfficientSamExportHook
from .model import EfficientSamDataPreprocessor, EfficientSamFinetuner
from .weights import export_official_checkpoint, load_exported, load_prefixed

DATASETS.register_module(name='EfficientSamSA1BDataset', module=SA1BDataset)
FUNCTIONS.register_module(name='efficientsam_collate', module=efficientsam_collate)

__all__ = ['SA1BDataset', 'efficientsam_collate', 'EfficientSamFinetuner', 'EfficientSamDataPreprocessor',
           'EfficientSamExportHook', 'PromptableIoUMetric', 'export_official_checkpoint', 'load_exported',
           'load_prefixed']
