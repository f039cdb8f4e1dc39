# ViTDet Mask R-CNN, SAMI-TI backbone (192 dims), COCO, LSJ 1024, 100 epochs.
# Paper (EfficientSAM, Table 3): box AP 44.7 / mask AP 40.0.
_base_ = './_base_/sami_vitdet_mask-rcnn_lsj-100e.py'

model = dict(
    backbone=dict(
        arch='ti',
        # The paper's start: a SAMI ImageNet pretraining checkpoint (tools/train.py configs/sami/...).
        # An official EfficientSAM checkpoint or a zoo name also loads (the _efficientsam-init variants).
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth')),
    neck=dict(backbone_channel=192))
