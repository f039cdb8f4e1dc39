"""Hooks of the mmengine runs: the loss over all ranks, checkpoints that never lose the last good one,
the official-layout export after training."""
import os
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..convert import save_export
from ..fileio import atomic_write


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
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments), except that the last good checkpoint always
    survives: the new checkpoint is written to a hidden ``.<name>.partial`` file beside it and renamed
    into place, and only then are the checkpoints beyond ``max_keep_ckpts`` removed and
    ``last_checkpoint`` rewritten (atomically). mmengine removes the oldest first, so a run killed
    while writing with ``max_keep_ckpts=1`` kept nothing. ``tools/train.py`` uses it for every config
    whose checkpoint hook is mmengine's; remote ``out_dir`` backends keep mmengine's behaviour."""

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = []  # the ids are updated first, as mmengine does, so that the checkpoint records them
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:  # the deque's maxlen: take it out first
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = os.path.join(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        partial = os.path.join(self.out_dir, f'.{name}.partial')
        runner.save_checkpoint(self.out_dir, os.path.basename(partial), self.file_client_args,
                               save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                               meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():  # rank 0 writes the files
            return
        os.replace(partial, self.last_ckpt)  # complete at its name; only now may older ones go
        for old in outdated:
            path = os.path.join(self.out_dir, self.filename_tmpl.format(old))
            if old != step and os.path.isfile(path):
                os.remove(path)
        atomic_write(os.path.join(runner.work_dir, 'last_checkpoint'), self._write_last_checkpoint)

    def _write_last_checkpoint(self, path: str) -> None:
        with open(path, 'w', encoding='utf-8') as stream:
            stream.write(self.last_ckpt)


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
