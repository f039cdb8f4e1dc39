# Mask2Former with a SAMI ViT backbone on ADE20K: the recipe of the EfficientSAM paper (Sec. 4.2),
# built on mmseg's own Mask2Former config (512x512 crops, 8 GPUs x 2 = batch 16, AdamW lr 2e-4,
# poly schedule, 160k iterations). Variants set the backbone width below.
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdet.models', 'efficientsam_plugins.openmmlab.mmseg'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    # Sliding 512x512 windows (stride 341, mmseg's ViT recipes) at test time: the ViT then sees the
    # 32x32 token grid it is trained on, where whole-image testing of a 512x683 image would feed it
    # 32x43. The test images are not padded beforehand (test_cfg=None): Mask2Former sizes each
    # window's masks to pad_shape when it is set, which would be the whole image's.
    data_preprocessor=dict(test_cfg=None),
    backbone=dict(
        _delete_=True,
        type='SAMIViT',
        arch='ti',
        img_size=crop_size[0],
        drop_path_rate=0.1,
        # Global attention in every block: a 512 crop is a 32x32 token grid, 1024 tokens, so global
        # attention stays cheap (ViTDet's windows exist for 64x64 grids), 14-token windows would
        # pad 32 to 42, and every block then attends the way SAMI pretraining did.
        window_size=0,
        global_attn_indexes=(),
        use_rel_pos=True),
    # ViTDet's simple pyramid from the last block, strides 4/8/16/32: the same neck as detection.
    neck=dict(type='SAMISimpleFPN', backbone_channel=192, out_channels=256, num_outs=4),
    decode_head=dict(in_channels=[256] * 4),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# The paper's optimizer: backbone lr x0.1, no layer-wise decay (the _layer-decay variants add 0.9).
# Mask2Former's query and level embeddings get no weight decay; 1-D parameters (norms, biases) and
# the position embedding get none either (the constructor's rule).
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SAMILayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        layer_decay_rate=1.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))
# 2 images x 8 GPUs = 16; `tools/train.py --auto-scale-lr` rescales lr for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=16)
