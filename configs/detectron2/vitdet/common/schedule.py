"""Learning-rate multipliers of the detectron2 configs, as fractions of training (follow train.max_iter).

``paper_lr_multiplier``: the EfficientSAM paper's schedule, linear warm-up over the first 10 of 100
epochs, then cosine decay to 0 over the rest; the same curve as the mmdet configs' LinearLR +
CosineAnnealingLR. ``vitdet_step_lr_multiplier``: ViTDet's, 250 warm-up iterations, then x0.1 at
8/9 and x0.01 at 26/27 of training.
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler

WARMUP_FACTOR = 0.001  # the first iteration's lr, relative to the base lr (ViTDet's and the mmdet configs')


def paper_lr_multiplier(warmup_epochs=10, epochs=100):
    return L(WarmupParamScheduler)(
        scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
        warmup_length=warmup_epochs / epochs,
        warmup_factor=WARMUP_FACTOR,
        rescale_interval=True,  # the cosine spans the post-warm-up part, from 1 down to 0
    )


def vitdet_step_lr_multiplier(max_iter, warmup_iters=250):
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0, 0.1, 0.01],
            milestones=[round(max_iter * 8 / 9), round(max_iter * 26 / 27)],
            num_updates=max_iter,
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=WARMUP_FACTOR,
    )
