# A small *trained* SqueezeSAM for judging int8 agreement (SqueezeSAM's real weights were never
# published, and random weights put most logits near the mask threshold): the test suite's tiny
# architecture (128 px input, 5 UNet levels) trained for 400 iterations on the bundled
# data/coco_mini train2017 images, about 20 minutes on 2 CPU cores. Then
#     python tools/train.py configs/squeezesam/squeezesam_sa1b_int8-standin.py
#     python tools/benchmark.py --models squeezesam \
#         --squeezesam-checkpoint work_dirs/squeezesam_sa1b_int8-standin/squeezesam_int8_standin.pt
_base_ = './squeezesam_sa1b_smoke.py'

img_size = 128
mask_size = 64
max_iters = 400
standin = dict(_delete_=True, encoder_image_size=img_size, encoder_patch_size=2, encoder_patch_embed_dim=8,
               encoder_unet_conv_dims=[8, 16, 16, 24, 32], decoder_transformer_depth=2,
               decoder_transformer_mlp_dim=32, decoder_num_heads=4, num_multimask_outputs=3, iou_head_depth=2,
               iou_head_hidden_dim=24)

model = dict(model_config=standin, num_iterative_clicks=0)
train_pipeline = [
    dict(type='RandomObjectCrop', context=(1.5, 4.0), probability=0.5),
    dict(type='ResizeToModelInput', img_size=img_size, mask_size=mask_size),
    dict(type='MergeWholeObjects', probability=0.5, touch_distance=1),
    dict(type='PackPromptSample', max_queries=4),
]
train_dataloader = dict(dataset=dict(img_size=img_size, mask_size=mask_size, load_size=2 * img_size,
                                     max_images=None, pipeline=train_pipeline))
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.01))
param_scheduler = [dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=0,
                        end=max_iters)]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters, max_keep_ckpts=2))
custom_hooks = [dict(type='SqueezeSamExportHook', filename='squeezesam_int8_standin.pt')]
work_dir = 'work_dirs/squeezesam_sa1b_int8-standin'
