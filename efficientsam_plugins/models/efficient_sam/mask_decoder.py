"""EfficientSAM's mask decoder: two-way transformer, upscaling and hypernetwork mask heads."""
from typing import Sequence, Tuple, Type

import torch
import torch.nn as nn

from ..transformer import MLPBlock, TwoWayTransformer, hypernetwork_masks


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs`` masks (plus a single-mask token) and their IoUs.

    Args:
        transformer_dim: width of image embeddings and prompt tokens.
        iou_head_depth: number of hidden Linear+activation layers of the IoU head (the official
            builder passes ``iou_head_depth - 1`` of its config here).
        upscaling_layer_dims: output channels of the 2x transposed-conv upscaling stages.
    """

    def __init__(self, *, transformer_dim: int, transformer: TwoWayTransformer,
                 num_multimask_outputs: int, iou_head_depth: int, iou_head_hidden_dim: int,
                 upscaling_layer_dims: Sequence[int], activation: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1 if num_multimask_outputs > 1 else 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.final_output_upscaling_layers = nn.ModuleList()
        in_dim = transformer_dim
        for i, out_dim in enumerate(upscaling_layer_dims):
            last = i == len(upscaling_layer_dims) - 1
            self.final_output_upscaling_layers.append(nn.Sequential(
                nn.ConvTranspose2d(in_dim, out_dim, kernel_size=2, stride=2),
                nn.Identity() if last else nn.GroupNorm(1, out_dim),
                activation()))
            in_dim = out_dim
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(transformer_dim, transformer_dim, in_dim, 2, activation)
            for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLPBlock(transformer_dim, iou_head_hidden_dim,
                                            self.num_mask_tokens, iou_head_depth, activation)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: ``[B, C, h, w]``, one per image.
            image_pe: ``[1, C, h, w]``.
            sparse_prompt_embeddings: ``[B, Q, N, C]``.

        Returns:
            ``(masks [B*Q, M, 4h, 4w], iou [B*Q, M])`` with ``M = num_multimask_outputs`` when
            ``multimask_output`` else 1.
        """
        b, nq = sparse_prompt_embeddings.shape[:2]
        if image_embeddings.shape[0] != b:
            raise ValueError(f'{image_embeddings.shape[0]} image embeddings for prompts of {b} images')
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(b, nq, -1, -1), sparse_prompt_embeddings], dim=2)
        hs, src = self.transformer(image_embeddings, image_pe, tokens, output_tokens.shape[0])
        iou_pred = self.iou_prediction_head(hs[:, :, 0]).flatten(0, 1)
        selected = slice(1, None) if multimask_output and self.num_multimask_outputs > 1 else slice(0, 1)
        mask_tokens = hs[:, :, 1:1 + self.num_mask_tokens].flatten(0, 1)
        h, w = image_embeddings.shape[-2:]
        upscaled = src.flatten(0, 1).transpose(1, 2).reshape(b * nq, self.transformer_dim, h, w)
        for layer in self.final_output_upscaling_layers:
            upscaled = layer(upscaled)
        masks = hypernetwork_masks(self.output_hypernetworks_mlps[selected], mask_tokens[:, selected], upscaled)
        return masks, iou_pred[:, selected]
