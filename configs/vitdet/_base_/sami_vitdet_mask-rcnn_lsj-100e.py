# ViTDet Mask R-CNN with a SAMI ViT backbone: the recipe of the EfficientSAM paper (Sec. 4.2),
# built on mmdet's own Mask R-CNN and LSJ configs. Variants set the backbone width below.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['efficientsam_plugins.openmmlab.mmdet'], allow_failed_imports=False)

image_size = (1024, 1024)
norm_cfg = dict(type='LayerNorm2d', requires_grad=True)

# Training batches are padded to the 1024 square (LSJ crops are at most 1024) and so are test batches
# (detectron2's square_pad=1024): the ViT always sees the 64x64 token grid its position embeddings and
# global blocks' relative-position tables are trained on. The test padding is done here rather than
# with a pipeline Pad, which would widen img_shape and let boxes predicted in the padding escape
# clipping.
model = dict(
    data_preprocessor=dict(
        type='SAMIDetDataPreprocessor',
        pad_size_divisor=32,
        test_pad_size=image_size,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='SAMIViT',
        arch='ti',
        # ViTDet's backbone: window attention 14 but global in blocks 2/5/8/11, relative positions,
        # drop path 0.1 (efficientsam_plugins.models.vit.VITDET_SETTINGS).
        preset='vitdet',
        img_size=image_size[0]),
    neck=dict(_delete_=True, type='SAMISimpleFPN', backbone_channel=192, out_channels=256, num_outs=5),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
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
# 4 images x 16 GPUs = 64; `tools/train.py --auto-scale-lr` rescales lr for other totals.
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    dataset=dict(_delete_=True, type='CocoDataset', data_root='data/coco/',
                 ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW, lr 2e-4 at batch 64 (paper), weight decay 0.1 (none for norms, biases and the position
# embedding; relative-position tables are decayed, as in both ViTDet implementations), layer-wise lr
# decay 0.7 through the backbone's get_layer_depth. AMP on GPU; CPU runs use OptimWrapper (the smoke
# config does).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='SAMILayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7),
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.1))

# The paper's schedule: 100 epochs, linear warm-up over the first 10, then cosine decay to 0, stepped
# every iteration (convert_to_iter_based), so it follows the epoch length of any batch size. The
# cosine ends with training (`end` defaults to max_epochs). An epoch is one pass over the ~117k
# training images with annotations, ~1,830 iterations at batch 64 (detectron2's ViTDet counts 118,000).
max_epochs = 100
warmup_epochs = 10
interval = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=interval)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, save_last=True, interval=interval, max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
auto_scale_lr = dict(enable=False, base_batch_size=64)
