"""The mask head: hypernetwork MLPs turn mask tokens into per-pixel weights over the decoder's
level-0 features, an MLP turns the IoU token into predicted IoUs."""
from typing import Tuple

import torch
import torch.nn as nn

from ..transformer import MLPBlock, hypernetwork_masks


class MaskHead(nn.Module):
    """Masks and predicted IoUs from the bottom transformer's tokens.

    ``M + 1`` mask tokens are trained, as in SAM; the official model drops the first mask (SAM's
    single-mask output) and returns the other ``M``, so only those are computed here.

    Args:
        token_dim: channels of the tokens.
        feature_dim: channels of the level-0 features.
        num_multimask_outputs: M.
        iou_head_depth: hidden layers of the IoU head.
        iou_head_hidden_dim: width of the IoU head.
    """

    def __init__(self, token_dim: int, feature_dim: int, num_multimask_outputs: int, iou_head_depth: int,
                 iou_head_hidden_dim: int) -> None:
        super().__init__()
        self.num_mask_tokens = num_multimask_outputs + 1
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(token_dim, token_dim, feature_dim, 2, nn.ReLU) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLPBlock(token_dim, iou_head_hidden_dim, self.num_mask_tokens,
                                            iou_head_depth, nn.ReLU)

    def forward(self, mask_tokens: torch.Tensor, iou_token: torch.Tensor,
                features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Masks and predicted IoUs.

        Args:
            mask_tokens: ``[n, M + 1, C]``.
            iou_token: ``[n, C]``.
            features: ``[n, c, h, w]`` level-0 features.

        Returns:
            ``(masks [n, M, h, w], iou [n, M])``.
        """
        masks = hypernetwork_masks(self.output_hypernetworks_mlps[1:], mask_tokens[:, 1:], features)
        return masks, self.iou_prediction_head(iou_token)[:, 1:]
