"""``sami_ti_coco.py`` with ViTDet's published step schedule instead of the paper's warm-up + cosine:
lr 1e-4 (ViTDet's, at 64 images per iteration), 250 warm-up iterations, lr x0.1 at 8/9 and x0.01 at
26/27 of training. For comparisons with ViTDet/MAE baselines trained that way.
"""
from .common.schedule import vitdet_step_lr_multiplier
from .sami_ti_coco import dataloader, model, optimizer, train

train.output_dir = 'work_dirs/detectron2/sami_ti_coco_step-lr'
optimizer.lr = 1e-4
lr_multiplier = vitdet_step_lr_multiplier(train.max_iter, warmup_iters=250)
