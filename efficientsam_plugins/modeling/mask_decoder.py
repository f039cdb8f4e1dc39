"""EfficientSAM's mask decoder: two-way transformer, upscaling and hypernetwork mask heads."""
from typing import Sequence, Tuple, Type

import torch
import torch.nn as nn

from .transformer import MLPBlock, TwoWayTransformer, hypernetwork_masks


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs`` masks (plus a single-mask token) and their IoUs.

    Args:
        transformer_dim: channels of the image embedding and the tokens.
        transformer: the two-way transformer between prompt tokens and the image embedding.
        num_multimask_outputs: candidate masks per query (a single-mask token is added when > 1).
        iou_head_depth: hidden layers of the IoU head (the official builder passes its config's
            ``iou_head_depth - 1``).
        iou_head_hidden_dim: width of the IoU head.
        upscaling_layer_dims: channels of the 2x upscaling stages of the image embedding.
        activation: the activation of the upscaling and the heads.
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
        dims = [transformer_dim, *upscaling_layer_dims]  # 2x transposed convs, no norm after the last
        self.final_output_upscaling_layers = nn.Sequential(*(nn.Sequential(
            nn.ConvTranspose2d(dims[i], dims[i + 1], kernel_size=2, stride=2),
            nn.GroupNorm(1, dims[i + 1]) if i + 2 < len(dims) else nn.Identity(), activation())
            for i in range(len(upscaling_layer_dims))))
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(transformer_dim, transformer_dim, dims[-1], 2, activation)
            for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLPBlock(transformer_dim, iou_head_hidden_dim,
                                            self.num_mask_tokens, iou_head_depth, activation)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Masks and predicted IoUs of prompt tokens.

        Args:
            image_embeddings: ``[B, C, h, w]``, one per image.
            image_pe: ``[1, C, h, w]`` positional code of the embedding grid.
            sparse_prompt_embeddings: ``[B, Q, N, C]`` prompt tokens.
            multimask_output: the ``num_multimask_outputs`` candidates (True) or the single-mask one.

        Returns:
            ``(masks [B*Q, M, 4h, 4w], iou [B*Q, M])``, M = 1 without ``multimask_output``.
        """
        masks, iou_pred = self.predict_all_masks(image_embeddings, image_pe, sparse_prompt_embeddings)
        selected = slice(1, None) if multimask_output and self.num_multimask_outputs > 1 else slice(0, 1)
        return masks[:, selected], iou_pred[:, selected]

    def predict_all_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                          sparse_prompt_embeddings: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`forward`, with the masks and IoUs of every mask token (single-mask first): both
        heads from one transformer pass (the ONNX decoder graph returns both).

        Args:
            image_embeddings: as :meth:`forward`.
            image_pe: as :meth:`forward`.
            sparse_prompt_embeddings: as :meth:`forward`.

        Returns:
            ``(masks [B*Q, T, 4h, 4w], iou [B*Q, T])`` for all T mask tokens.
        """
        b, nq = sparse_prompt_embeddings.shape[:2]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(b, nq, -1, -1), sparse_prompt_embeddings], dim=2)
        hs, src = self.transformer(image_embeddings, image_pe, tokens, output_tokens.shape[0])
        h, w = image_embeddings.shape[-2:]
        upscaled = self.final_output_upscaling_layers(
            src.flatten(0, 1).transpose(1, 2).reshape(b * nq, self.transformer_dim, h, w))
        masks = hypernetwork_masks(self.output_hypernetworks_mlps, hs[:, :, 1:1 + self.num_mask_tokens].flatten(0, 1),
                                   upscaled)
        return masks, self.iou_prediction_head(hs[:, :, 0]).flatten(0, 1)
