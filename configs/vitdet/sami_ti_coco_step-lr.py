# sami_ti_coco.py with ViTDet's published step schedule instead of the paper's warm-up + cosine: lr 1e-4
# (ViTDet's, at batch 64), 250 warm-up iterations, lr x0.1 at epochs 89 and 96 (8/9 and 26/27 of
# training). For comparisons with ViTDet/MAE baselines trained that way.
_base_ = './sami_ti_coco.py'

optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=True, begin=0, milestones=[89, 96], gamma=0.1, convert_to_iter_based=True),
]
