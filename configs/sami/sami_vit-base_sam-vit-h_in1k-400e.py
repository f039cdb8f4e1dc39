# SAMI pretraining of ViT-B with a SAM ViT-H teacher on ImageNet-1K (recipe in the base file).
_base_ = './_base_/sami_sam-vit-h_in1k-400e.py'

model = dict(
    backbone=dict(arch='b'),
    neck=dict(in_channels=768))
