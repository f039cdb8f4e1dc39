# sami_s_coco.py started from the released EfficientSAM-S image encoder (zoo://efficientsam_s: SAMI
# pretraining, then SA-1B finetuning for promptable segmentation) instead of the paper's start, a SAMI
# ImageNet pretraining checkpoint (none is published: train one with configs/sami/ first). Downloadable
# today, hence this variant; its AP is not the paper's recipe.
_base_ = './sami_s_coco.py'

model = dict(backbone=dict(init_cfg=dict(checkpoint='zoo://efficientsam_s')))
