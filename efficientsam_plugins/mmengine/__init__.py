"""mmengine-level helpers shared by the mmpretrain, mmdet and mmseg adapters and the launchers.

Importing this package needs mmengine; ``efficientsam_plugins`` itself never imports it.
"""
from .checkpoints import enable_weights_only_checkpoints, mmengine_checkpoint_globals
from .hooks import MeanLossOverRanksHook
from .launch import add_common_arguments, build_runner, init_distributed, load_config

__all__ = ['enable_weights_only_checkpoints', 'mmengine_checkpoint_globals',
           'MeanLossOverRanksHook', 'add_common_arguments', 'build_runner', 'init_distributed',
           'load_config']
