# CPU smoke run of sami_vit-tiny_sam-vit-h-1024px_in1k-400e.py: the smoke run of
# ./sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py with its tiny teacher at its native input (256, a
# 16x16 map pooled to the student's 4x4 grid), as the full config runs SAM at its native 1024:
#   python tools/train.py configs/sami/sami_vit-tiny_sam-vit-h-1024px_in1k-400e_smoke.py
_base_ = './sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py'

model = dict(target_generator=dict(resolution=256))
