"""The models as ``nn.Module``s, importing only torch: the ViT every adapter wraps, EfficientSAM
(image encoder, prompt encoder, two-way mask decoder), SqueezeSAM (early fusion, UNet, bottom
transformer, mask head) and SAMI's pretraining modules (masking, cross-attention decoder, head).
Builders that load checkpoints live in :mod:`efficientsam_plugins.build`."""
from .attention import dot_product_attention, eager_attention
from .efficient_sam import EfficientSam
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .simple_pyramid import SimpleFeaturePyramid
from .squeeze_sam import SqueezeSam
from .transformer import TwoWayTransformer
from .vit import VIT_ARCHS, ViT, vit_arch

__all__ = ['ViT', 'VIT_ARCHS', 'vit_arch', 'dot_product_attention', 'eager_attention', 'EfficientSam', 'MaskDecoder',
           'PromptEncoder', 'SimpleFeaturePyramid', 'SqueezeSam', 'TwoWayTransformer']
