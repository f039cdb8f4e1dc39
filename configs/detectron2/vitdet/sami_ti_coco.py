"""Mask R-CNN with a SAMI ViT-Ti backbone on COCO: the recipe of ``sami_b_coco.py`` with the
Ti width. Layer decay stays 0.7 and drop path 0.1: ViTDet ties the decay to the depth (0.7 for 12
blocks, 0.8 for 24, 0.9 for 32) and Ti has B's 12 blocks.

Weights: a SAMI-Ti ImageNet pretraining checkpoint (``tools/train.py configs/sami/sami_vit-tiny_...``), the
paper's start; ``sami_ti_coco_efficientsam-init.py`` starts from the released EfficientSAM-Ti encoder.
"""
from functools import partial

from efficientsam_plugins.detectron2.lr_decay import vit_lr_decay_rate

from .sami_b_coco import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.arch = 'ti'
train.output_dir = 'work_dirs/detectron2/sami_ti_coco'
train.init_checkpoint = 'work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth'
optimizer.params.lr_factor_func = partial(vit_lr_decay_rate, lr_decay_rate=0.7, num_layers=12)
