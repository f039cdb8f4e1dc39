"""Mask R-CNN with a SAMI ViT-B backbone on COCO: the EfficientSAM paper's recipe on detectron2's ViTDet.

100 epochs at 64 images per iteration (LSJ at 1024, test images padded to the 1024 square), AdamW
(lr 2e-4, weight decay 0.1, none for norms, biases and the position embedding), layer-wise lr decay
0.7, linear warm-up over the first 10 epochs then cosine decay to 0 (the same curve as the mmdet
configs), mixed precision on GPU. The detector is detectron2's ViTDet Mask R-CNN (LayerNorm in the
pyramid and heads, two-conv RPN, 4conv1fc box head, RGB input with ImageNet mean/std) with the
project's ViT and simple pyramid as backbone. ``sami_b_coco_step-lr.py``: ViTDet's step schedule.

Weights: a SAMI-B ImageNet pretraining checkpoint (``tools/train.py configs/sami/...``; mmengine
format, the ViT under ``backbone.``), as the paper and the mmdet configs start; none is published,
so train it first or pass ``train.init_checkpoint=PATH`` (an MAE/timm ViT-B also loads, for the
ViTDet baseline).
"""
from functools import partial

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from efficientsam_plugins.detectron2.backbone import SAMISimpleFeaturePyramid, SAMIViTNet
from efficientsam_plugins.detectron2.lr_decay import sami_optimizer_params, vit_lr_decay_rate

from .common.coco_lsj import IMAGE_SIZE, dataloader
from .common.schedule import paper_lr_multiplier

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
train.init_checkpoint = 'work_dirs/sami_vit-base_sam-vit-h_in1k-400e/epoch_400.pth'
train.amp.enabled = True
train.ddp.fp16_compression = True
IMAGES_PER_EPOCH, EPOCHS, WARMUP_EPOCHS = 118_000, 100, 10  # ViTDet's epoch: 118,000 images
train.max_iter = EPOCHS * IMAGES_PER_EPOCH // dataloader.train.total_batch_size

lr_multiplier = paper_lr_multiplier(WARMUP_EPOCHS, EPOCHS)

optimizer = model_zoo.get_config('common/optim.py').AdamW
optimizer.lr = 2e-4
optimizer.params = L(sami_optimizer_params)(
    base_lr='${..lr}',
    weight_decay='${..weight_decay}',
    lr_factor_func=partial(vit_lr_decay_rate, lr_decay_rate=0.7, num_layers=12),
)
