# ImageNet-1K finetuning of a SAMI-pretrained ViT-Ti (EfficientSAM paper; target top-1 76.8) with
# no layer-wise lr decay (rate 1.0); recipe in the base file.
# The backbone loads the SAMI checkpoint's backbone.* weights; point init_cfg.checkpoint at yours:
#   python tools/train.py configs/imagenet/sami_vit-tiny_in1k-100e.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth
_base_ = './_base_/sami_vit_in1k-100e.py'

model = dict(
    backbone=dict(
        arch='ti',
        init_cfg=dict(checkpoint='work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth')),
    head=dict(in_channels=192))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=1.0))
