"""Saving the finetuned model in the official EfficientSAM layout at the end of training."""
import os
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .weights import export_official_checkpoint


@HOOKS.register_module(name='EfficientSamExportHook')
class EfficientSamExportHook(Hook):
    """Writes ``work_dir/<filename>`` as ``{"model": state_dict}`` (plus ``.config.json``) after
    training, so the result loads with ``build_efficient_sam`` / ``EfficientSamPredictor``.

    Args:
        filename: checkpoint name inside the work dir.
        out_dir: another folder instead of the work dir.
    """

    priority = 'LOW'

    def __init__(self, filename: str = 'efficientsam_finetuned.pt', out_dir: Optional[str] = None) -> None:
        self.filename, self.out_dir = filename, out_dir
        self.path: Optional[str] = None

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.path = os.path.join(self.out_dir or runner.work_dir, self.filename)
        export_official_checkpoint(model.model, self.path, model.model_config)
        runner.logger.info(f'EfficientSAM checkpoint (official layout) saved to {self.path}')
