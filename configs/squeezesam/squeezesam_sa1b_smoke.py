# Smoke run of the SqueezeSAM recipe on CPU: a tiny SqueezeSAM (64 px input, 32 px masks) trained
# from scratch on the bundled data/coco_mini train2017 with all three whole-object augmentations,
# iterative clicks (negative ones too) and the previous-mask channel, evaluated on 2 val2017 images,
# exported to work_dir/squeezesam_smoke.pt (+ .config.json).
#     python tools/train.py configs/squeezesam/squeezesam_sa1b_smoke.py
_base_ = './squeezesam_sa1b.py'

data_root = 'data/coco_mini'
img_size = 64
mask_size = 32
max_iters = 40
tiny = dict(_delete_=True, encoder_image_size=img_size, encoder_patch_size=2, encoder_patch_embed_dim=16,
            encoder_unet_conv_dims=[16, 16, 24, 32], decoder_transformer_depth=1, decoder_transformer_mlp_dim=32,
            decoder_num_heads=2, iou_head_hidden_dim=16, negative_click_channel=True, previous_mask_channel=True)

model = dict(model_config=tiny, num_iterative_clicks=2, eval_protocol=dict(clicks=(1, 3), preset='sam'))
train_pipeline = [
    dict(type='RandomObjectCrop', context=(1.5, 4.0), probability=0.5),
    dict(type='ResizeToModelInput', img_size=img_size, mask_size=mask_size),
    dict(type='MergeWholeObjects', probability=0.5, touch_distance=1),
    dict(type='InjectOutlierClicks', max_clicks=2, probability=0.5, margin=1),
    dict(type='PackPromptSample', max_queries=6),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, type='SqueezeSamSA1BDataset',
                 ann_file=f'{data_root}/annotations/instances_train2017.json',
                 img_dir=f'{data_root}/train2017', img_size=img_size, mask_size=mask_size,
                 load_size=2 * img_size, max_images=8, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    dataset=dict(ann_file=f'{data_root}/annotations/instances_val2017.json',
                 img_dir=f'{data_root}/val2017', max_images=2))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), weight_decay=0.1))
param_scheduler = [dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=0,
                        end=max_iters)]
auto_scale_lr = dict(base_batch_size=2, enable=False)
default_hooks = dict(logger=dict(interval=10), sampler_seed=None,
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=2))
custom_hooks = [dict(type='SqueezeSamExportHook', filename='squeezesam_smoke.pt')]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
work_dir = 'work_dirs/squeezesam_sa1b_smoke'
