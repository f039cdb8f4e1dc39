# CPU smoke run of sami_vit-tiny_sam-vit-h_in1k-400e.py: its ViT-Ti student on the smoke recipe of
# ./_base_/sami_sam-vit-h_in1k-400e_smoke.py (64x64 views, tiny random teacher, the bundled COCO
# images, 20 iterations). Runs in well under a minute:
#   python tools/train.py configs/sami/sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py
_base_ = './_base_/sami_sam-vit-h_in1k-400e_smoke.py'

model = dict(
    backbone=dict(arch='ti'),
    neck=dict(in_channels=192))
