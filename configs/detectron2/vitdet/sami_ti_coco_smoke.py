"""A minutes-long CPU check of ``sami_ti_coco.py`` on the bundled 8/8-image COCO subset ``data/coco_mini``.

Same detector, backbone and recipe, shrunk for two CPU cores: 256-pixel LSJ (16x16 tokens, so
windows of 8 instead of 14, which would be mostly padding), 64 channels instead of 256 in the
pyramid and heads, 128 sampled RoIs per image, fewer proposals and detections, 2 images per
iteration, 30 iterations on the full config's schedule (warm-up over the first 10%, then
cosine to 0), evaluation with COCOEvaluator at the end.
Random initialisation unless ``train.init_checkpoint=...`` is given. The data root can be moved
with ``SAMI_SMOKE_DATA_ROOT`` (any COCO-layout folder). It checks that everything runs; its AP says
nothing about the model.
"""
import os

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.layers import ShapeSpec

from .common.coco_lsj import lsj_test_augmentations, lsj_train_augmentations
from .sami_ti_coco import dataloader, lr_multiplier, model, optimizer, train

_REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
DATA_ROOT = os.environ.get('SAMI_SMOKE_DATA_ROOT', os.path.join(_REPO_ROOT, 'data', 'coco_mini'))
for _split in ('train2017', 'val2017'):
    if f'sami_smoke_{_split}' not in DatasetCatalog.list():
        register_coco_instances(f'sami_smoke_{_split}', {},
                                os.path.join(DATA_ROOT, 'annotations', f'instances_{_split}.json'),
                                os.path.join(DATA_ROOT, _split))

IMAGE_SIZE, CHANNELS = 256, 64
model.backbone.net.img_size = IMAGE_SIZE
model.backbone.net.window_size = 8
model.backbone.square_pad = IMAGE_SIZE
model.backbone.out_channels = CHANNELS
model.proposal_generator.head.in_channels = CHANNELS
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (300, 100)
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.input_shape = ShapeSpec(channels=CHANNELS, height=7, width=7)
model.roi_heads.box_head.conv_dims = [CHANNELS] * 4
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=CHANNELS, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [CHANNELS] * 5
model.roi_heads.box_predictor.test_topk_per_image = 50
# A barely trained classifier scores below the usual 0.05; keep its boxes so that AP is computed.
model.roi_heads.box_predictor.test_score_thresh = 0.0

dataloader.train.dataset.names = 'sami_smoke_train2017'
dataloader.train.mapper.augmentations = lsj_train_augmentations(IMAGE_SIZE)
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 0
dataloader.test.dataset.names = 'sami_smoke_val2017'
dataloader.test.mapper.augmentations = lsj_test_augmentations(IMAGE_SIZE)
dataloader.test.num_workers = 0

train.output_dir = 'work_dirs/detectron2/sami_ti_coco_smoke'
train.init_checkpoint = ''
train.seed = 0
train.max_iter = 30
train.eval_period = train.max_iter
train.log_period = 1
train.checkpointer.period = 10 * train.max_iter  # no periodic copies: only model_final.pth
train.checkpointer.max_to_keep = 1

