# CPU smoke run of sami_vit-small_sam-vit-h_in1k-400e.py: its ViT-S student on the smoke recipe of
# ./_base_/sami_sam-vit-h_in1k-400e_smoke.py (64x64 views, tiny random teacher, the bundled COCO
# images, 20 iterations). Runs in well under a minute:
#   python tools/train.py configs/sami/sami_vit-small_sam-vit-h_in1k-400e_smoke.py
_base_ = './_base_/sami_sam-vit-h_in1k-400e_smoke.py'

model = dict(
    backbone=dict(arch='s'),
    neck=dict(in_channels=384))
