"""Zero-shot evaluation of promptable segmentation (box/click mIoU) and of box-prompted instance
segmentation (mask AP), shared by the tools and the mmengine metric in ``openmmlab/metric.py``
(this package needs no mmengine; pycocotools and OpenCV are imported when first used).
"""
from .clicks import CLICK_PRESETS, center_click, next_error_click, next_positive_click, random_click
from .dataset import ImageInfo, Instance, InstanceDataset, load_rgb_image
from .masks import encode_mask, mask_iou, size_bucket, tight_box
from .promptable import EvaluationResult, PromptProtocol, evaluate_dataset, evaluate_image, format_table, summarize
from .segmenters import BoxFillSegmenter, GroundTruthSegmenter, PredictorSegmenter, PromptBatch, Segmentation, Segmenter
from .zero_shot import evaluate_segmentation, load_detections, segment_detections

__all__ = [
    'PromptProtocol', 'evaluate_dataset', 'evaluate_image', 'summarize', 'format_table',
    'EvaluationResult', 'InstanceDataset', 'ImageInfo', 'Instance', 'load_rgb_image', 'Segmenter',
    'PromptBatch', 'Segmentation', 'PredictorSegmenter', 'GroundTruthSegmenter',
    'BoxFillSegmenter', 'center_click', 'random_click', 'next_positive_click',
    'next_error_click', 'CLICK_PRESETS',
    'mask_iou', 'tight_box', 'size_bucket', 'encode_mask',
    'load_detections', 'segment_detections', 'evaluate_segmentation',
]
