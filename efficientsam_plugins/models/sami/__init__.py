"""SAMI pretraining (EfficientSAM paper), pure PyTorch: masking, cross-attention decoder,
projection head and loss, frozen teachers, view cropping and the teacher-feature cache.
Registered for mmpretrain by :mod:`efficientsam_plugins.openmmlab.mmpretrain`."""
from .decoder import CrossAttention, CrossAttentionBlock, CrossAttentionDecoder, sincos_pos_embed_2d
from .feature_cache import (FeatureCacheError, FeatureCacheWriter, TeacherFeatureCache,
                            ensure_meta, image_key, incomplete_shards, read_meta)
from .head import ProjectionHead, ReconstructionLoss
from .masking import check_mask_ratio, random_token_mask
from .teachers import (EfficientSAMTeacher, EncoderTeacher, FrozenTeacher, SAMTeacher,
                       TeacherSlot)
from .views import FULL_BOX, compose_boxes, crop_to_views, resize_to_grid

__all__ = [
    'CrossAttention', 'CrossAttentionBlock', 'CrossAttentionDecoder', 'sincos_pos_embed_2d',
    'FeatureCacheError', 'FeatureCacheWriter', 'TeacherFeatureCache', 'ensure_meta', 'image_key',
    'incomplete_shards', 'read_meta', 'ProjectionHead', 'ReconstructionLoss', 'check_mask_ratio',
    'random_token_mask', 'EfficientSAMTeacher', 'EncoderTeacher', 'FrozenTeacher', 'SAMTeacher',
    'TeacherSlot', 'FULL_BOX', 'compose_boxes', 'crop_to_views', 'resize_to_grid',
]
