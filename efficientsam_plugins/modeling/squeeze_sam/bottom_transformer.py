"""The transformer at the UNet's coarsest level: SAM's two-way transformer (the core's shared one)
between an IoU token, the mask tokens and the bottom feature map; it has no positional encoding
and no prompt tokens (prompts entered with the image), only one all-zero token where SAM's sparse
prompts would be."""
from typing import Tuple

import torch
import torch.nn as nn

from ..transformer import TwoWayTransformer


class BottomTransformer(nn.Module):
    """SAM's two-way transformer between the output tokens and the UNet's bottom features.

    Args:
        embedding_dim: channels of the bottom features and the tokens.
        depth: two-way blocks.
        num_heads: attention heads.
        mlp_dim: width of the MLPs.
        num_multimask_outputs: M (M + 1 mask tokens).
    """

    def __init__(self, embedding_dim: int, depth: int, num_heads: int, mlp_dim: int,
                 num_multimask_outputs: int) -> None:
        super().__init__()
        self.num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(depth, embedding_dim, num_heads, mlp_dim, nn.ReLU)
        self.iou_token = nn.Embedding(1, embedding_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, embedding_dim)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``features`` ``[n, C, h, w]`` to (IoU token ``[n, C]``, mask tokens ``[n, M + 1, C]``,
        updated features ``[n, C, h, w]``)."""
        n, c, h, w = features.shape
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens, output_tokens.new_zeros(1, c)])  # the empty prompt slot
        # Each query has its own fused image, so every feature map is an "image" with one query.
        queries, keys = self.transformer(features, None, tokens.expand(n, 1, -1, -1), output_tokens.shape[0])
        updated = keys[:, 0].transpose(1, 2).reshape(n, c, h, w)
        return queries[:, 0, 0], queries[:, 0, 1:], updated
