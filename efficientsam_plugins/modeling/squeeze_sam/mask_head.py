"""The mask head: hypernetwork MLPs turn mask tokens into per-pixel weights over the decoder's
level-0 features, an MLP turns the IoU token into predicted IoUs."""
from typing import Tuple

import torch
import torch.nn as nn

from ..transformer import MLPBlock, hypernetwork_masks


class MaskHead(nn.Module):
    """``M + 1`` mask tokens are trained, as in SAM; the official model drops the first mask (SAM's
    single-mask output) and returns the other ``M``, so only those are computed here."""

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
        """``[n, M + 1, C]``, ``[n, C]``, ``[n, c, h, w]`` to (masks ``[n, M, h, w]``, IoU ``[n, M]``)."""
        masks = hypernetwork_masks(self.output_hypernetworks_mlps[1:], mask_tokens[:, 1:], features)
        return masks, self.iou_prediction_head(iou_token)[:, 1:]
