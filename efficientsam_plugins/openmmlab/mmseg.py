"""mmseg: ``custom_imports=dict(imports=['mmdet.models', 'efficientsam_plugins.openmmlab.mmseg'])``.

Registers the backbone and neck of the mmdet adapter (one backbone, one pyramid and one checkpoint
loader for detection and segmentation) and ``LayerNorm2d`` in mmengine's root MODELS, which mmseg's
searches, and a COCO-semantic dataset for smoke runs (Mask2Former's head comes from mmdet).
"""
from mmseg.datasets import BaseSegDataset, COCOStuffDataset
from mmseg.registry import DATASETS

from .backbone import SAMIViT
from .checkpoints import enable_weights_only_checkpoints
from .layer_decay import SAMILayerDecayOptimWrapperConstructor
from .neck import SAMISimpleFPN

# COCO-Stuff lists the 80 thing classes first, in COCO's order
COCO_THING_CLASSES = tuple(COCOStuffDataset.METAINFO['classes'][:80])


@DATASETS.register_module()
class SAMICocoSemanticDataset(BaseSegDataset):
    """``{split}/*.jpg`` with ``semantic/{split}/*.png``: 0 background, 1..80 COCO things, 255 ignore.

    The layout of the bundled ``data/coco_mini`` (and of ``../shared/data/coco_cc``). Background is a
    real class (label 0), so ``reduce_zero_label`` stays False and the model predicts 81 classes.
    """

    METAINFO = dict(classes=('background',) + COCO_THING_CLASSES)


enable_weights_only_checkpoints()

__all__ = ['SAMIViT', 'SAMISimpleFPN', 'SAMILayerDecayOptimWrapperConstructor', 'SAMICocoSemanticDataset']
