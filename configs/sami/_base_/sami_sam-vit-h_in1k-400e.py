# SAMI pretraining with a SAM ViT-H teacher on ImageNet-1K (EfficientSAM paper), shared by the
# ViT-Ti/S/B configs of configs/sami (they set the student's width; their smoke runs add
# ./sami_sam-vit-h_in1k-400e_smoke.py): 224x224 random-resized crops + flips, 75% masking, 8-block
# 512-d cross-attention decoder, MSE to SAM's 256-d neck features; AdamW lr 2.4e-3 at batch 4096
# (scaled by auto_scale_lr to the real batch), betas (0.9, 0.95), weight decay 0.05, 40 warm-up
# epochs then cosine, 400 epochs. The schedule, optimizer and ImageNet data come from mmpretrain's
# MAE recipe.
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'

custom_imports = dict(imports=['efficientsam_plugins.openmmlab.mmpretrain'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='SAMI',
    teacher_mode='online',
    mask_ratio=0.75,
    backbone=dict(type='SAMIViT', arch='ti', img_size=224, patch_size=16, final_norm=True),
    neck=dict(type='CrossAttentionDecoder', in_channels=192, embed_dim=512, depth=8, num_heads=16),
    head=dict(
        type='SAMIHead',
        in_channels=512,
        out_channels=256,
        loss=dict(type='ReconstructionLoss', criterion='mse')),
    # The official sam_vit_h_4b8939.pth (a zoo name or a path). The paper does not state the
    # teacher's input size; this default runs it on the student's 224 views (a 14x14 map, the
    # student's grid, ~21x cheaper than 1024). ../sami_vit-*_sam-vit-h-1024px_in1k-400e.py run it at
    # SAM's native 1024 and pool its 64x64 map to the 14x14 grid.
    target_generator=dict(
        type='SAMTeacher', arch='vit_h', checkpoint='sam_vit_h', resolution='student', layer='neck'))

# Same augmentation as MAE; the crop also records its box so cached targets can follow the view.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='SAMIRandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))

# Logged losses are those of the whole global batch, not of rank 0 alone.
custom_hooks = [dict(type='MeanLossOverRanksHook')]

auto_scale_lr = dict(base_batch_size=4096, enable=True)
