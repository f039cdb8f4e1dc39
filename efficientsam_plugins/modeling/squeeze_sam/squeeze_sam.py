"""SqueezeSAM (Varadarajan et al., "SqueezeSAM: User-Friendly Mobile Interactive Segmentation",
arXiv 2312.06736): a UNet with a small two-way transformer at its coarsest level, BatchNorm
instead of LayerNorm, and the user's prompts fused into the input image.

Keeps the official module names (checkpoints of the official ``build_squeeze_sam_base`` load
strictly) and call: ``forward(images, points, labels) -> (logits [B, Q, 3, H, W], iou [B, Q, 3])``.
Unlike EfficientSAM nothing is shared between queries: each query's prompts change the input, so
the whole network runs once per query.
"""
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import check_prompts, merge_config
from .bottom_transformer import BottomTransformer
from .early_fusion import EarlyFusion
from .mask_head import MaskHead
from .unet_decoder import UnetDecoder
from .unet_encoder import PatchEmbed, UnetEncoder

# The official build_squeeze_sam_base (its constructor's argument names) and this project's
# options, which default to the official input.
BASE_CONFIG: Dict[str, Any] = dict(
    encoder_image_size=512, encoder_patch_size=2, encoder_patch_embed_dim=64,
    encoder_unet_conv_dims=[64, 128, 128, 128, 128, 164, 256, 256], decoder_transformer_depth=2,
    decoder_transformer_mlp_dim=256, decoder_num_heads=8, num_multimask_outputs=3, iou_head_depth=2,
    iou_head_hidden_dim=256, negative_click_channel=False, previous_mask_channel=False)
_CONFIG_NAMES = ('base', 'squeezesam', 'squeeze_sam')


class SqueezeSam(nn.Module):
    """SqueezeSAM, the promptable segmentation model; images are float ``[B, 3, H, W]`` RGB in [0, 1].

    The prompts are fused into the input (early fusion) and every query runs the whole UNet. Build
    it with :func:`efficientsam_plugins.build.build_squeeze_sam` (or ``build_model``).

    Args:
        encoder_image_size: the side of the square network input.
        encoder_patch_size: the patch size of the patch embedding.
        encoder_patch_embed_dim: the patch embedding's channels.
        encoder_unet_conv_dims: channels of the UNet levels, top to bottom (each level halves the grid).
        decoder_transformer_depth: blocks of the bottom transformer.
        decoder_transformer_mlp_dim: MLP width of the bottom transformer.
        decoder_num_heads: attention heads of the bottom transformer.
        num_multimask_outputs: candidate masks per query.
        iou_head_depth: layers of the IoU prediction head.
        iou_head_hidden_dim: width of the IoU prediction head.
        negative_click_channel: an input channel of label-0 clicks, which the official model lacks
            (without it label-0 points are ignored, as upstream ignores them).
        previous_mask_channel: an input channel of the previous prediction (iterative clicking).
    """

    mask_threshold: float = 0.0

    def __init__(self, encoder_image_size: int, encoder_patch_size: int, encoder_patch_embed_dim: int,
                 encoder_unet_conv_dims, decoder_transformer_depth: int, decoder_transformer_mlp_dim: int,
                 decoder_num_heads: int, num_multimask_outputs: int, iou_head_depth: int,
                 iou_head_hidden_dim: int, negative_click_channel: bool = False,
                 previous_mask_channel: bool = False) -> None:
        super().__init__()
        dims = list(encoder_unet_conv_dims)
        self.early_fusion = EarlyFusion(encoder_image_size, negative_click_channel=negative_click_channel,
                                        previous_mask_channel=previous_mask_channel)
        self.patch_embed = PatchEmbed(encoder_patch_size, 3 + self.early_fusion.num_prompt_channels,
                                      encoder_patch_embed_dim)
        self.unet_encoder = UnetEncoder(encoder_patch_embed_dim, dims)
        self.get_iou_predictions_and_mask_tokens = BottomTransformer(
            dims[-1], decoder_transformer_depth, decoder_num_heads, decoder_transformer_mlp_dim,
            num_multimask_outputs)
        self.unet_decoder = UnetDecoder(dims)
        self.mask_decoder = MaskHead(dims[-1], dims[0], num_multimask_outputs, iou_head_depth,
                                     iou_head_hidden_dim)

    @property
    def img_size(self) -> int:
        """The side of the square network input."""
        return self.early_fusion.image_size

    @property
    def negative_click_channel(self) -> bool:
        """Whether the model has the negative-click input channel (label 0)."""
        return self.early_fusion.negative_click_channel

    @property
    def previous_mask_channel(self) -> bool:
        """Whether the model has the previous-mask input channel."""
        return self.early_fusion.previous_mask_channel

    def preprocess(self, batched_images: torch.Tensor) -> torch.Tensor:
        """The network image: resized to the square input and normalised.

        Args:
            batched_images: ``[B, 3, H, W]`` RGB in [0, 1].

        Returns:
            ``[B, 3, S, S]``.

        Raises:
            ValueError: for images that are not ``[B, 3, H, W]``.
        """
        if batched_images.ndim != 4 or batched_images.shape[1] != 3:
            raise ValueError(f'batched_images must be [B, 3, H, W], got {tuple(batched_images.shape)}')
        return self.early_fusion.preprocess(batched_images)

    def predict_masks(self, images: torch.Tensor, batched_points: torch.Tensor,
                      batched_point_labels: torch.Tensor, input_h: int, input_w: int,
                      previous_masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Masks of prompts on preprocessed images, one network pass per query.

        Args:
            images: ``[B, 3, S, S]`` from :meth:`preprocess`.
            batched_points: ``[B, Q, N, 2]`` (x, y) pixels of the ``input_h x input_w`` originals.
            batched_point_labels: ``[B, Q, N]``: 1 point, 2/3 box corners, -1 padding, 0 negative.
            input_h: the height of the original images.
            input_w: their width.
            previous_masks: ``[B, Q, h, w]`` logits (any size) of the previous prediction, for the
                previous-mask channel (None: empty).

        Returns:
            ``(low-res logits [B, Q, M, S/p, S/p], iou_predictions [B, Q, M])``.

        Raises:
            ValueError: for prompts of the wrong shape.
        """
        check_prompts(images, batched_points, batched_point_labels)
        b, nq = batched_points.shape[:2]
        fused = self.early_fusion(images, batched_points, batched_point_labels, input_h, input_w, previous_masks)
        features = self.unet_encoder(self.patch_embed(fused))
        iou_token, mask_tokens, bottom = self.get_iou_predictions_and_mask_tokens(features[-1])
        top = self.unet_decoder(features[:-1], bottom)
        masks, iou = self.mask_decoder(mask_tokens, iou_token, top)
        return masks.view(b, nq, *masks.shape[1:]), iou.view(b, nq, -1)

    def forward(self, batched_images: torch.Tensor, batched_points: torch.Tensor,
                batched_point_labels: torch.Tensor, scale_to_original_image_size: bool = True,
                previous_masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images and prompts to masks, as the official model's call.

        Args:
            batched_images: ``[B, 3, H, W]`` RGB in [0, 1].
            batched_points: ``[B, Q, N, 2]`` (x, y) pixels of the images.
            batched_point_labels: ``[B, Q, N]`` labels (see :meth:`predict_masks`).
            scale_to_original_image_size: upsample the logits (bicubic) to ``H x W``.
            previous_masks: as :meth:`predict_masks`.

        Returns:
            ``(mask_logits [B, Q, M, H, W], iou_predictions [B, Q, M])`` (low-res logits without
            ``scale_to_original_image_size``).
        """
        input_h, input_w = batched_images.shape[-2:]
        logits, iou = self.predict_masks(self.preprocess(batched_images), batched_points, batched_point_labels,
                                         input_h, input_w, previous_masks)
        if scale_to_original_image_size:
            logits = F.interpolate(logits.flatten(0, 1), (input_h, input_w), mode='bicubic').view(
                *logits.shape[:3], input_h, input_w)
        return logits, iou


def resolve_config(config: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A full SqueezeSAM architecture config.

    Args:
        config: ``'base'`` or a dict of the official constructor's arguments (plus
            ``negative_click_channel`` / ``previous_mask_channel``) overriding :data:`BASE_CONFIG`.

    Returns:
        Every key of :data:`BASE_CONFIG`, checked.

    Raises:
        ValueError: for an unknown name or key, a value of the wrong kind, or more UNet levels than
            the patch grid can halve.
    """
    if isinstance(config, str):
        if config.lower() not in _CONFIG_NAMES:
            raise ValueError(f"unknown SqueezeSAM config {config!r}; expected 'base' or a dict")
        return dict(BASE_CONFIG)
    merged = merge_config('SqueezeSAM', config, BASE_CONFIG)
    levels = len(merged['encoder_unet_conv_dims'])
    grid = merged['encoder_image_size'] // merged['encoder_patch_size']
    if grid < 2 ** (levels - 1):
        raise ValueError(f'SqueezeSAM config: {levels} UNet levels halve the {grid}x{grid} patch grid '
                         f'{levels - 1} times; use a larger encoder_image_size or fewer encoder_unet_conv_dims')
    return merged
