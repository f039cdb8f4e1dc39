# Smoke run of the SA-1B finetuning recipe on CPU in well under a minute: a tiny EfficientSAM
# (256 px input) trained from scratch for 30 iterations on the bundled data/coco_mini train2017 (COCO
# format: the dataset reads it like SA-1B), evaluated on 3 val2017 images, exported in the
# official layout to work_dir/efficientsam_smoke.pt (+ .config.json).
#     python tools/train.py configs/efficientsam/efficientsam_ti_sa1b_smoke.py
_base_ = './efficientsam_ti_sa1b.py'

data_root = 'data/coco_mini'
img_size = 256
tiny = dict(_delete_=True, img_size=img_size, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32], dec_depth=2,
            dec_heads=2, dec_mlp_dim=64, upscaling=[16, 8], iou_head_hidden_dim=32)
max_iters = 30

model = dict(model_config=tiny, encoder_init=None, decoder_init=None, num_iterative_clicks=1,
             eval_protocol=dict(clicks=(1, 3), preset='sam'))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, type='SA1BDataset',
                 ann_file=f'{data_root}/annotations/instances_train2017.json',
                 img_dir=f'{data_root}/train2017', img_size=img_size, max_masks_per_image=6,
                 max_images=8))
val_dataloader = dict(
    num_workers=0,
    dataset=dict(ann_file=f'{data_root}/annotations/instances_val2017.json',
                 img_dir=f'{data_root}/val2017', max_images=3))
test_dataloader = val_dataloader

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.1))
param_scheduler = [dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=0,
                        end=max_iters)]
auto_scale_lr = dict(base_batch_size=2, enable=False)
default_hooks = dict(logger=dict(interval=10), sampler_seed=None,
                     checkpoint=dict(interval=max_iters, by_epoch=False, max_keep_ckpts=2))
custom_hooks = [dict(type='EfficientSamExportHook', filename='efficientsam_smoke.pt')]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=False)
work_dir = 'work_dirs/efficientsam_ti_sa1b_smoke'
