# CPU smoke recipe of configs/imagenet/sami_vit-{tiny,small,base}_in1k-100e_smoke.py (they set
# what their full configs set, with the SAMI smoke run's checkpoint): the model and recipe of
# ./sami_vit_in1k-100e.py at 64x64 on the bundled COCO images (labelled by their largest object,
# 80 classes), 4 iterations, then validation.
_base_ = './sami_vit_in1k-100e.py'

data_root = 'data/coco_mini/'
data_preprocessor = dict(num_classes=80)

model = dict(
    backbone=dict(img_size=64),
    head=dict(num_classes=80))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[103.53, 116.28, 123.675],
        fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='COCOMainObjectDataset',
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix='train2017',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='COCOMainObjectDataset',
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix='val2017',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', T_max=2, by_epoch=False, begin=2, end=4, eta_min=1e-6),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=4)
auto_scale_lr = dict(enable=False)

default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=4, max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=1)
