# SqueezeSAM (Varadarajan et al., arXiv 2312.06736) trained on SA-1B with the blog's whole-object
# augmentations. Neither the paper nor the blog publishes the recipe; every choice below comes from
# SAM's (Kirillov et al. 2023, appendix A) or EfficientSAM's recipe and is listed in README
# ("SqueezeSAM training"). The decisive ones are plain options here.
#
# Run:   python tools/train.py configs/squeezesam/squeezesam_sa1b.py            (8 GPUs: tools/dist_train.sh)
#        resume: --resume; distillation: squeezesam_sa1b_distill.py
# Data:  data/sa1b/ holds the extracted SA-1B tars (sa_N.jpg + sa_N.json side by side);
#        data/coco/ (val2017) for the promptable mIoU after training.
# Output: work_dir/squeezesam_sa1b.pt ({"model": state_dict}, official key names) and
#        squeezesam_sa1b.config.json; build_squeeze_sam(<config.json>, <.pt>) / SqueezeSamPredictor load it.
default_scope = 'mmengine'
custom_imports = dict(imports=['efficientsam_plugins.openmmlab.squeezesam'], allow_failed_imports=False)

sa1b_root = 'data/sa1b'
coco_root = 'data/coco'
num_gpus = 8
batch_size_per_gpu = 16
img_size = 512                      # the official encoder_image_size
mask_size = img_size // 2           # the decoder's output: the patch size is 2
max_queries = 16                    # masks (queries) per image: each runs the whole network
max_iters = 90000                   # SAM's schedule: about one SA-1B epoch at batch 128

# The blog's behaviour is learned from negative clicks and refinement: both extra input channels are on
# (squeezesam_sa1b_official-input.py trains the official 5-channel input instead).
model_config = dict(negative_click_channel=True, previous_mask_channel=True)

model = dict(
    type='SqueezeSamTrainer',
    model_config=model_config,
    box_probability=0.5,            # SAM: box or point with equal probability
    num_iterative_clicks=4,         # error-region clicks after the first prompt (SAM: 8; each costs a full pass)
    loss_weights=dict(focal=20.0, dice=1.0, iou=1.0),
    teacher=None,
    seed=0,
    eval_protocol=dict(box=True, clicks=(1, 3), preset='sam', seed=0))

train_pipeline = [
    dict(type='RandomObjectCrop', context=(1.5, 4.0), probability=0.5, min_visible=0.0),
    dict(type='ResizeToModelInput', img_size=img_size, mask_size=mask_size),
    dict(type='MergeWholeObjects', probability=0.5, merge_parts=True, merge_touching=True,
         neighbour_probability=1.0, touch_distance=2, containment=0.8),
    dict(type='InjectOutlierClicks', max_clicks=2, probability=0.25, margin=2),
    dict(type='PackPromptSample', max_queries=max_queries),
]
train_dataloader = dict(
    batch_size=batch_size_per_gpu,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='efficientsam_collate'),
    dataset=dict(type='SqueezeSamSA1BDataset', data_root=sa1b_root, img_size=img_size, mask_size=mask_size,
                 load_size=2 * img_size, max_loaded_masks=None, pipeline=train_pipeline))
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

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# SAM's optimiser and schedule (AdamW, wd 0.1, 250-iteration linear warmup, x0.1 at 2/3 and 26/27 of
# the run) at SAM's lr per image: 8e-4 for batch 256 -> 4e-4 for batch 128 (EfficientSAM's lr too).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=False, milestones=[60000, 86666], gamma=0.1),
]
# The mask head computes 3 of its 4 hypernetwork MLPs (SAM's single-mask token is dropped), so DDP
# must allow unused parameters. BatchNorm statistics stay per GPU: 16 images x 16 queries a batch.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
auto_scale_lr = dict(base_batch_size=num_gpus * batch_size_per_gpu, enable=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5000, by_epoch=False, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='MeanLossOverRanksHook'), dict(type='SqueezeSamExportHook', filename='squeezesam_sa1b.pt')]

env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
