# CPU smoke run of sami_vit-tiny_in1k-100e.py: its ViT-Ti on the smoke recipe of
# ./_base_/sami_vit_in1k-100e_smoke.py (64x64, the bundled COCO images, 4 iterations, then
# validation). It loads the checkpoint of the SAMI smoke run, so run that first:
#   python tools/train.py configs/sami/sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py
#   python tools/train.py configs/imagenet/sami_vit-tiny_in1k-100e_smoke.py
_base_ = './_base_/sami_vit_in1k-100e_smoke.py'

model = dict(
    backbone=dict(
        arch='ti',
        init_cfg=dict(checkpoint='work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e_smoke/iter_20.pth')),
    head=dict(in_channels=192))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=1.0))
