"""Hooks of the mmengine runs: the loss over all ranks, the official-layout export after training."""
import os
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..convert import save_export


@HOOKS.register_module()
class MeanLossOverRanksHook(Hook):
    """Logs the losses averaged over all ranks, not rank 0's share of the batch alone, so runs on
    different numbers of processes compare; one small all-reduce per iteration, before
    :class:`~mmengine.hooks.RuntimeInfoHook` records the values."""

    priority = 'HIGHEST'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or get_world_size() == 1:
            return
        keys = [k for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
        if not keys:
            return
        values = torch.stack([outputs[k].detach().float().reshape(()) for k in keys])
        all_reduce(values, op='mean')
        outputs.update(zip(keys, values))


@HOOKS.register_module()
class EfficientSamExportHook(Hook):
    """Writes ``<out_dir or work_dir>/<filename>`` as ``{"model": state_dict}`` (plus
    ``.config.json``) after training, so the result loads with ``build_efficient_sam``."""

    priority = 'LOW'
    label = 'EfficientSAM checkpoint (official layout)'

    def __init__(self, filename: str = 'efficientsam_finetuned.pt', out_dir: Optional[str] = None) -> None:
        self.filename, self.out_dir = filename, out_dir
        self.path: Optional[str] = None

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.path = os.path.join(self.out_dir or runner.work_dir, self.filename)
        save_export(model.model.state_dict(), self.path, model.model_config)  # the trainer resolved it
        print_log(f'{self.label} saved to {self.path}', logger='current')
