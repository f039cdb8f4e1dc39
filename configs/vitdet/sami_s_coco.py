# ViTDet Mask R-CNN, SAMI-S backbone (384 dims), COCO, LSJ 1024, 100 epochs.
# Paper (EfficientSAM, Table 3): box AP 49.8 / mask AP 44.2.
_base_ = './_base_/sami_vitdet_mask-rcnn_lsj-100e.py'

model = dict(
    backbone=dict(
        arch='s',
        # The paper's start: a SAMI ImageNet pretraining checkpoint (tools/train.py configs/sami/...).
        # An official EfficientSAM checkpoint or a zoo name also loads (the _efficientsam-init variants).
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/sami_vit-small_sam-vit-h_in1k-400e/epoch_400.pth')),
    neck=dict(backbone_channel=384))
