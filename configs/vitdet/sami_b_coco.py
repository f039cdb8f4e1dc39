# ViTDet Mask R-CNN, SAMI-B backbone (768 dims), COCO, LSJ 1024, 100 epochs.
# Paper (EfficientSAM, Table 3): box AP 52.5 / mask AP 46.5.
_base_ = './_base_/sami_vitdet_mask-rcnn_lsj-100e.py'

model = dict(
    backbone=dict(
        arch='b',
        # The paper's start: a SAMI ImageNet pretraining checkpoint (tools/train.py configs/sami/...).
        # An official EfficientSAM checkpoint or a zoo name also loads (the _efficientsam-init variants).
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth')),
    neck=dict(backbone_channel=768))
