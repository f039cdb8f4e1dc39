# Mask2Former, SAMI-S backbone (384 dims), ADE20K, 512x512 crops, 160k iterations at batch 16.
# Paper (EfficientSAM, ADE20K semantic segmentation): mIoU 48.8.
_base_ = './_base_/sami_mask2former_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='s',
        # A SAMI pretraining checkpoint (tools/train.py configs/sami/...), an official
        # EfficientSAM one, or a model-zoo name such as 'zoo://efficientsam_ti'.
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/sami_vit-small_sam-vit-h_in1k-400e/epoch_400.pth')),
    neck=dict(backbone_channel=384))
