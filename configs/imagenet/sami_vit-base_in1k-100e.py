# ImageNet-1K finetuning of a SAMI-pretrained ViT-B (EfficientSAM paper; target top-1 84.8):
# 100 epochs, batch 1024 (8 x 128), AdamW lr 1e-3, layer-wise lr decay 0.75, RandAugment,
# label smoothing 0.1, mixup 0.8, cutmix 1.0 (mmpretrain's MAE finetuning recipe otherwise).
# The backbone loads the SAMI checkpoint's backbone.* weights; point init_cfg.checkpoint at yours:
#   python tools/train.py configs/imagenet/sami_vit-base_in1k-100e.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'

custom_imports = dict(imports=['efficientsam_plugins.mmpretrain'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SAMIViT',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth',
            prefix='backbone.')),
    head=dict(in_channels=768))

train_dataloader = dict(collate_fn=dict(type='default_collate'))
val_dataloader = dict(collate_fn=dict(type='default_collate'))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(layer_decay_rate=0.75, custom_keys={'norm': dict(decay_mult=0.0)}))

auto_scale_lr = dict(base_batch_size=1024, enable=True)
