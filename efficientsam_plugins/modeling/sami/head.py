"""SAMI's head: a linear projection to the teacher's width and the reconstruction loss."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

CRITERIA = ('mse', 'cosine')


class ReconstructionLoss(nn.Module):
    """The reconstruction loss of SAMI.

    Args:
        criterion: ``'mse'`` (the paper's default) over tokens and channels, or ``'cosine'`` (its
            ablation): ``1 - cos`` per token, averaged.
        loss_weight: the loss's factor.

    Raises:
        ValueError: for an unknown criterion.
    """

    def __init__(self, criterion: str = 'mse', loss_weight: float = 1.0) -> None:
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(f'unknown reconstruction criterion {criterion!r}; expected one of {CRITERIA}')
        self.criterion, self.loss_weight = criterion, loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted loss.

        Args:
            pred: ``[B, L, C]`` predicted tokens.
            target: ``[B, L, C]`` the teacher's tokens.

        Returns:
            The scalar loss (float32).

        Raises:
            ValueError: when the shapes differ.
        """
        if pred.shape != target.shape:
            raise ValueError(f'prediction {tuple(pred.shape)} and target {tuple(target.shape)} '
                             f'differ: is the head projecting to the teacher\'s channels?')
        pred, target = pred.float(), target.float()
        if self.criterion == 'mse':
            return F.mse_loss(pred, target) * self.loss_weight
        return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean() * self.loss_weight

    def extra_repr(self) -> str:
        """The criterion and weight, for ``repr``."""
        return f'criterion={self.criterion!r}, loss_weight={self.loss_weight}'


class ProjectionHead(nn.Module):
    """Projects decoder tokens to the teacher's width.

    Args:
        in_channels: the decoder's width.
        out_channels: the teacher's width.
        loss: the loss of :meth:`loss`; None: :class:`ReconstructionLoss` with MSE.
    """

    def __init__(self, in_channels: int = 512, out_channels: int = 256,
                 loss: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.loss_module = loss if loss is not None else ReconstructionLoss()
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform weight, zero bias (MAE's)."""
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``[B, L, in_channels]`` to ``[B, L, out_channels]``."""
        return self.proj(tokens)

    def loss(self, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of the projected tokens.

        Args:
            tokens: ``[B, L, in_channels]`` decoder tokens.
            target: ``[B, L, out_channels]`` the teacher's tokens.

        Returns:
            The scalar loss.
        """
        return self.loss_module(self.proj(tokens), target)
