# CPU smoke recipe of configs/sami/sami_vit-{tiny,small,base}_sam-vit-h_in1k-400e_smoke.py (they
# set the student's width, as their full configs do): the model and recipe of
# ./sami_sam-vit-h_in1k-400e.py, but 64x64 views, a small decoder, a tiny SAM-architecture teacher
# with random weights (checkpoint=None: smoke only), the bundled COCO images, 20 iterations.
_base_ = './sami_sam-vit-h_in1k-400e.py'

model = dict(
    backbone=dict(img_size=64),
    neck=dict(embed_dim=64, depth=2, num_heads=4),
    head=dict(in_channels=64, out_channels=32),
    target_generator=dict(
        arch=dict(
            _delete_=True,
            embed_dim=32,
            depth=2,
            num_heads=2,
            global_attn_indexes=[1],
            img_size=256,
            window_size=2,
            out_chans=32),
        checkpoint=None))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='SAMIRandomResizedCrop',
        scale=64,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/coco_mini',
        data_prefix='train2017',
        with_label=False,
        pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', T_max=18, by_epoch=False, begin=2, end=20),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=20)
auto_scale_lr = dict(enable=False)

default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=10, max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=1)
