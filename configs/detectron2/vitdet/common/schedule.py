"""ViTDet's learning-rate multiplier: linear warm-up, then x0.1 at 8/9 and x0.01 at 26/27 of training."""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def vitdet_lr_multiplier(max_iter, warmup_iters=250):
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0, 0.1, 0.01],
            milestones=[round(max_iter * 8 / 9), round(max_iter * 26 / 27)],
            num_updates=max_iter,
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=0.001,
    )
