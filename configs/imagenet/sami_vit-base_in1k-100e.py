# ImageNet-1K finetuning of a SAMI-pretrained ViT-B (EfficientSAM paper; target top-1 84.8) with
# layer-wise lr decay 0.75; recipe in the base file.
# The backbone loads the SAMI checkpoint's backbone.* weights; point init_cfg.checkpoint at yours:
#   python tools/train.py configs/imagenet/sami_vit-base_in1k-100e.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth
_base_ = './_base_/sami_vit_in1k-100e.py'

model = dict(
    backbone=dict(
        arch='b',
        init_cfg=dict(checkpoint='work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth')),
    head=dict(in_channels=768))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))
