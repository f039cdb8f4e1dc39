"""mmseg: ``custom_imports=dict(imports=['mmdet.models', 'efficientsam_plugins.openmmlab.mmseg'])``.

Registers the backbone and neck of the mmdet adapter (one backbone, one pyramid and one checkpoint
loader for detection and segmentation), ``LN2d``, and a COCO-semantic dataset for smoke runs
(Mask2Former's head comes from mmdet).
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS, MODELS

from ..models.vit import LayerNorm2d
from .backbone import SAMIViT
from .checkpoints import enable_weights_only_checkpoints
from .layer_decay import SAMILayerDecayOptimWrapperConstructor
from .neck import SAMISimpleFPN

# Spelled out rather than read from mmdet, so that segmentation with this adapter does not need mmdet.
COCO_THING_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
    'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush')


class SAMICocoSemanticDataset(BaseSegDataset):
    """``{split}/*.jpg`` with ``semantic/{split}/*.png``: 0 background, 1..80 COCO things, 255 ignore.

    The layout of the bundled ``data/coco_mini`` (and of ``../shared/data/coco_cc``). Background is a
    real class (label 0), so ``reduce_zero_label`` stays False and the model predicts 81 classes.
    """

    METAINFO = dict(classes=('background',) + COCO_THING_CLASSES)


MODELS.register_module(module=SAMIViT)
MODELS.register_module(module=SAMISimpleFPN)
MODELS.register_module('LN2d', module=LayerNorm2d)
DATASETS.register_module(module=SAMICocoSemanticDataset)
enable_weights_only_checkpoints()

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMILayerDecayOptimWrapperConstructor', 'SAMICocoSemanticDataset']
