# SAMI pretraining of ViT-S with a SAM ViT-H teacher on ImageNet-1K (recipe in the base file).
_base_ = './_base_/sami_sam-vit-h_in1k-400e.py'

model = dict(
    backbone=dict(arch='s'),
    neck=dict(in_channels=384))
