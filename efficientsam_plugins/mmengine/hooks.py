"""Hooks shared by every mmengine-based toolbox of this repository."""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class MeanLossOverRanksHook(Hook):
    """Logs the losses averaged over all ranks instead of rank 0's alone.

    mmengine logs what rank 0 computed on its share of the batch; with this hook the logged
    ``loss`` is the loss of the whole global batch, comparable between runs on different numbers
    of processes. It runs before :class:`~mmengine.hooks.RuntimeInfoHook` records the values and
    costs one small all-reduce per iteration (nothing without distribution).
    """

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
        for key, value in zip(keys, values):
            outputs[key] = value
