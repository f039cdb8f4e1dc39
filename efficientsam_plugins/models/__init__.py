"""Pure-PyTorch core: the one ViT and EfficientSAM (imports only torch)."""
from .attention import dot_product_attention, eager_attention
from .vit import VIT_ARCHS, ViT, vit_arch

__all__ = ['ViT', 'VIT_ARCHS', 'vit_arch', 'dot_product_attention', 'eager_attention']
