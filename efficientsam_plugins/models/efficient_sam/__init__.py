"""EfficientSAM (Xiong et al., CVPR 2024): encoder, prompt encoder, mask decoder, predictor."""
from ..predictor import image_to_tensor
from .automatic_mask_generator import EfficientSamAutomaticMaskGenerator
from .efficient_sam import EfficientSam, build_efficient_sam, resolve_config
from .mask_decoder import MaskDecoder
from .predictor import EfficientSamPredictor
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

__all__ = ['EfficientSam', 'build_efficient_sam', 'resolve_config', 'EfficientSamPredictor', 'image_to_tensor',
           'MaskDecoder', 'PromptEncoder', 'TwoWayTransformer', 'EfficientSamAutomaticMaskGenerator']
