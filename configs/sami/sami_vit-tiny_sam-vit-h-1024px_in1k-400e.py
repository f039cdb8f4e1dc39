# SAMI pretraining of ViT-Ti with the SAM ViT-H teacher at SAM's native 1024 x 1024 input: each
# 224 view is resized to 1024 for the teacher and its 64x64 map pooled (RoIAlign, as cached maps are
# cut) to the student's 14x14 grid. Otherwise the recipe of ./sami_vit-tiny_sam-vit-h_in1k-400e.py,
# whose teacher sees the 224 view itself (the default: the paper does not state this choice).
_base_ = './sami_vit-tiny_sam-vit-h_in1k-400e.py'

model = dict(target_generator=dict(resolution=1024))
