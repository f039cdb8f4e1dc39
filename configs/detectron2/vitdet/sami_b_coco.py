"""Mask R-CNN with a SAMI ViT-B backbone on COCO, following detectron2's ViTDet-B recipe.

100 epochs at 64 images per iteration (LSJ at 1024), AdamW (lr 1e-4, weight decay 0.1, none on
the position embedding), layer-wise lr decay 0.7, 250 warm-up iterations, lr x0.1 and x0.01 near
the end, mixed precision on GPU. The detector is detectron2's ViTDet Mask R-CNN (LayerNorm in the
pyramid and heads, two-conv RPN, 4conv1fc box head, RGB input with ImageNet mean/std) with the
project's ViT and simple pyramid as backbone.

Weights: set ``train.init_checkpoint`` to a SAMI-B pretraining checkpoint (mmengine format, the
ViT under ``backbone.``); none is published, hence no default. An MAE/timm ViT-B also
loads, for the ViTDet baseline.
"""
from functools import partial

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from efficientsam_plugins.detectron2.backbone import SAMISimpleFeaturePyramid, SAMIViTNet
from efficientsam_plugins.detectron2.lr_decay import vit_lr_decay_rate

from .common.coco_lsj import IMAGE_SIZE, dataloader
from .common.schedule import vitdet_lr_multiplier

model = model_zoo.get_config('common/models/mask_rcnn_vitdet.py').model
model.backbone = L(SAMISimpleFeaturePyramid)(
    net=L(SAMIViTNet)(
        arch='b',
        img_size=IMAGE_SIZE,
        patch_size=16,
        drop_path_rate=0.1,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        use_rel_pos=True,
        pretrain_img_size=224,
    ),
    out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5),
    top_block=True,
    square_pad=IMAGE_SIZE,
)

train = model_zoo.get_config('common/train.py').train
train.output_dir = 'work_dirs/detectron2/sami_b_coco'
train.init_checkpoint = ''
train.amp.enabled = True
train.ddp.fp16_compression = True
IMAGES_PER_EPOCH, EPOCHS = 118_000, 100
train.max_iter = EPOCHS * IMAGES_PER_EPOCH // dataloader.train.total_batch_size

lr_multiplier = vitdet_lr_multiplier(train.max_iter, warmup_iters=250)

optimizer = model_zoo.get_config('common/optim.py').AdamW
optimizer.params.lr_factor_func = partial(vit_lr_decay_rate, lr_decay_rate=0.7, num_layers=12)
optimizer.params.overrides = {'pos_embed': {'weight_decay': 0.0}}
