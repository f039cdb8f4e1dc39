# CPU smoke run of sami_ti_coco.py: same model and recipe, 192 px, 6 epochs of 4 iterations (the
# paper's schedule scaled: warm-up over the first 10%, cosine to 0), random init, on the COCO images
# bundled in data/coco_mini.
_base_ = './sami_ti_coco.py'

image_size = (192, 192)
data_root = 'data/coco_mini/'
model = dict(
    data_preprocessor=dict(test_pad_size=image_size,
                           batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(img_size=image_size[0], init_cfg=None),
    # Fewer proposals and sampled RoIs keep the 4conv1fc box and mask heads cheap on a CPU; a zero
    # score threshold lets the barely trained model emit detections for CocoMetric to score.
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200), rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline, filter_cfg=dict(min_size=8)))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper')
max_epochs = 6
warmup_epochs = max_epochs / 10
interval = max_epochs
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=interval)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=interval, max_keep_ckpts=2))
log_processor = dict(window_size=5)
