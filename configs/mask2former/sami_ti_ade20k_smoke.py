# CPU smoke run of sami_ti_ade20k.py: same model and recipe, changing only sizes, data and schedule:
# 128 px crops, a smaller Mask2Former head (20 queries, 3 decoder and 2 pixel-decoder layers),
# 40 iterations at batch 2, random init, on the COCO images bundled in data/coco_mini with their
# semantic maps (81 classes: background + 80 things).
_base_ = './sami_ti_ade20k.py'

crop_size = (128, 128)
num_classes = 81
data_root = 'data/coco_mini/'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size[0], init_cfg=None),
    test_cfg=dict(crop_size=crop_size, stride=(85, 85)),  # the full config's sliding windows, scaled
    decode_head=dict(
        num_classes=num_classes,
        num_queries=20,
        pixel_decoder=dict(encoder=dict(num_layers=2)),
        transformer_decoder=dict(num_layers=3),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=2048)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label from the dataset (False)
    dict(type='RandomResize', scale=(512, 128), ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),  # reduce_zero_label from the dataset (False)
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(type='SAMICocoSemanticDataset', data_root=data_root,
                 data_prefix=dict(img_path='train2017', seg_map_path='semantic/train2017'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(type='SAMICocoSemanticDataset', data_root=data_root,
                 data_prefix=dict(img_path='val2017', seg_map_path='semantic/val2017'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 40
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_iters, max_keep_ckpts=2))
log_processor = dict(window_size=5)
