"""``sami_s_coco.py`` started from the released EfficientSAM-S image encoder (``zoo://efficientsam_s``:
SAMI pretraining, then SA-1B finetuning for promptable segmentation) instead of the paper's start, a
SAMI ImageNet pretraining checkpoint (none is published). Downloadable today, hence this variant;
its AP is not the paper's recipe.
"""
from .sami_s_coco import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = 'work_dirs/detectron2/sami_s_coco_efficientsam-init'
train.init_checkpoint = 'zoo://efficientsam_s'
