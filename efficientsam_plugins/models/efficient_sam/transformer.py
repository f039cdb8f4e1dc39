"""EfficientSAM's two-way transformer: the core's shared one (:mod:`efficientsam_plugins.models.transformer`)."""
from ..transformer import MLPBlock, TwoWayAttention, TwoWayAttentionBlock, TwoWayTransformer

__all__ = ['MLPBlock', 'TwoWayAttention', 'TwoWayAttentionBlock', 'TwoWayTransformer']
