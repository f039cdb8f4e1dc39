# ImageNet-1K finetuning of a SAMI-pretrained ViT (EfficientSAM paper), shared by the ViT-Ti/S/B
# configs of configs/imagenet (they set the width, the SAMI checkpoint and the layer decay; their
# smoke runs add ./sami_vit_in1k-100e_smoke.py): 100 epochs, batch 1024 (8 x 128), AdamW lr 1e-3,
# layer-wise lr decay 0.75, RandAugment, label smoothing 0.1, mixup 0.8, cutmix 1.0 (mmpretrain's
# MAE finetuning recipe otherwise). The backbone loads the SAMI checkpoint's backbone.* weights.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'

custom_imports = dict(imports=['efficientsam_plugins.openmmlab.mmpretrain'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SAMIViT',
        arch='ti',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', prefix='backbone.')),
    head=dict(in_channels=192))

train_dataloader = dict(collate_fn=dict(type='default_collate'))
val_dataloader = dict(collate_fn=dict(type='default_collate'))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(layer_decay_rate=0.75, custom_keys={'norm': dict(decay_mult=0.0)}))

auto_scale_lr = dict(base_batch_size=1024, enable=True)
