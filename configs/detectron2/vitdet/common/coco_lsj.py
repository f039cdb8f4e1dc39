"""COCO loaders with large-scale jitter (ViTDet's LSJ), from detectron2's common COCO loader.

Training: horizontal flip, rescale to 0.1x-2.0x of a square target, crop to the square without
padding (the backbone pads batches to the square); boxes are recomputed from the cropped masks.
Testing: longest side resized to the square. Images are fed as RGB, like the SAMI/EfficientSAM
pretraining. 64 images per iteration, as in ViTDet.
"""
import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L


def lsj_train_augmentations(image_size):
    return [
        L(T.RandomFlip)(horizontal=True),
        L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=image_size, target_width=image_size),
        L(T.FixedSizeCrop)(crop_size=(image_size, image_size), pad=False),
    ]


def lsj_test_augmentations(image_size):
    return [L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)]


IMAGE_SIZE = 1024

dataloader = model_zoo.get_config('common/data/coco.py').dataloader
dataloader.train.mapper.augmentations = lsj_train_augmentations(IMAGE_SIZE)
dataloader.train.mapper.image_format = 'RGB'
dataloader.train.mapper.recompute_boxes = True
dataloader.train.total_batch_size = 64
dataloader.test.mapper.augmentations = lsj_test_augmentations(IMAGE_SIZE)
