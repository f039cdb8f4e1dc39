# EfficientSAM-Ti finetuning on SA-1B, the paper's recipe (Xiong et al., CVPR 2024, section 4):
# AdamW, lr 4e-4 decayed linearly to 0, weight decay 0.1, batch 128 of 1024x1024 images,
# 5 epochs; SAM's prompts (box or point, then 4 iterative clicks in the error region: the most the
# decoder takes after a box) and loss (focal : dice = 20 : 1, plus MSE of the IoU head, only the
# lowest-loss of the 3 masks back-propagated); the paper's click protocol for the mIoU.
#
# Run:   python tools/train.py configs/efficientsam/efficientsam_ti_sa1b.py   (8 GPUs x 16 images)
# Data:  data/sa1b/ holds the extracted SA-1B tars (sa_N.jpg + sa_N.json side by side);
#        data/coco/ is used for the promptable mIoU after training.
# Init:  as the paper: the encoder of a SAMI run (the last checkpoint of
#        configs/sami/sami_vit-tiny_sam-vit-h_in1k-400e.py; its student's final norm is dropped and
#        the neck, which it lacks, trained from scratch), the decoder from scratch. For another
#        run: --cfg-options model.encoder_init.checkpoint=<path>. efficientsam_ti_sa1b_from_released.py
#        starts from the released EfficientSAM-Ti encoder instead (no SAMI run needed).
# Output: work_dir/efficientsam_ti_sa1b.pt in the official layout ({"model": state_dict}), plus
#        efficientsam_ti_sa1b.config.json; it loads with build_efficient_sam / EfficientSamPredictor.
default_scope = 'mmengine'
custom_imports = dict(imports=['efficientsam_plugins.openmmlab.efficientsam'], allow_failed_imports=False)

arch = 'ti'
img_size = 1024
sa1b_root = 'data/sa1b'
coco_root = 'data/coco'
num_gpus = 8
batch_size_per_gpu = 16
max_epochs = 5

sami_checkpoint = 'work_dirs/sami_vit-tiny_sam-vit-h_in1k-400e/epoch_400.pth'
encoder_init = dict(checkpoint=sami_checkpoint, prefix='backbone.')
decoder_init = None

model = dict(
    type='EfficientSamFinetuner',
    model_config=arch,
    encoder_init=encoder_init,
    decoder_init=decoder_init,
    box_probability=0.5,
    num_iterative_clicks=None,  # the decoder trains from scratch: 4, SAM's iterative prompts
    loss_weights=dict(focal=20.0, dice=1.0, iou=1.0),
    eval_protocol=dict(box=True, clicks=(1, 3), preset='paper', seed=0))

train_dataloader = dict(
    batch_size=batch_size_per_gpu,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='efficientsam_collate'),
    dataset=dict(type='SA1BDataset', data_root=sa1b_root, img_size=img_size,
                 max_masks_per_image=64))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='efficientsam_collate'),
    dataset=dict(type='SA1BDataset', ann_file=f'{coco_root}/annotations/instances_val2017.json',
                 img_dir=f'{coco_root}/val2017', img_size=None))
val_evaluator = dict(type='PromptableIoUMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
# Multimask training never uses the decoder's single-mask head, so DDP must allow unused parameters.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
# The recipe's lr is for batch 128; enable to rescale it for another number of GPUs.
auto_scale_lr = dict(base_batch_size=num_gpus * batch_size_per_gpu, enable=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='EfficientSamExportHook', filename=f'efficientsam_{arch}_sa1b.pt')]

env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0)
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
