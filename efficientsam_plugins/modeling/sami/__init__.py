"""SAMI pretraining's modules (EfficientSAM paper): token masking, the cross-attention decoder,
the projection head and the reconstruction loss. Registered for mmpretrain by
:mod:`efficientsam_plugins.openmmlab.mmpretrain`; teachers and their cache are in
:mod:`efficientsam_plugins.training`."""
from .decoder import CrossAttention, CrossAttentionBlock, CrossAttentionDecoder, sincos_pos_embed_2d
from .head import ProjectionHead, ReconstructionLoss
from .masking import check_mask_ratio, random_token_mask

__all__ = ['CrossAttention', 'CrossAttentionBlock', 'CrossAttentionDecoder', 'sincos_pos_embed_2d',
           'ProjectionHead', 'ReconstructionLoss', 'check_mask_ratio', 'random_token_mask']
