"""EfficientSAM's prompt encoder: points and box corners as random-Fourier positional codes.

Unlike SAM it has no mask input and no dense embedding; a box is two points labelled 2 (top-left)
and 3 (bottom-right), and padding points (label -1) keep their positional code plus a learned
"invalid" embedding, exactly as the released model was trained. The released model has no
negative-click embedding; ``negative_points=True`` adds one (label 0, its own
``negative_point_embeddings`` table, so the released keys and graph stay as they are without it).
"""
import math
from typing import Tuple

import torch
import torch.nn as nn

from .common import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_NEGATIVE, LABEL_PADDING, LABEL_POINT


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al.).

    Args:
        num_pos_feats: frequencies; codes have ``2 * num_pos_feats`` channels (sine and cosine).
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer('positional_encoding_gaussian_matrix', torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Coordinates normalised to [0, 1], ``[..., 2]`` -> ``[..., 2 * num_pos_feats]``."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """The code of the centre of every cell of a grid.

        Args:
            size: the grid's ``(h, w)``.

        Returns:
            ``[C, h, w]`` codes.
        """
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """The code of pixel coordinates.

        Args:
            coords: ``[..., 2]`` (x, y) pixels.
            image_size: the image's ``(h, w)``.

        Returns:
            ``[..., C]`` codes.
        """
        scale = coords.new_tensor([1.0 / image_size[1], 1.0 / image_size[0]])
        return self._encode((coords * scale).float())


class PromptEncoder(nn.Module):
    """Sparse prompt embeddings of points with labels (-1 padding, 1 point, 2/3 box corners; 0
    negative point with ``negative_points``).

    Args:
        embed_dim: channels of the embeddings (the decoder's width).
        image_embedding_size: ``(h, w)`` of the image embedding grid.
        input_image_size: ``(H, W)`` of the model's input image, whose pixels the points are.
        negative_points: add the negative-click embedding (label 0) the released models lack.
    """

    def __init__(self, embed_dim: int, image_embedding_size: Tuple[int, int],
                 input_image_size: Tuple[int, int], negative_points: bool = False) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)
        self.negative_point_embeddings = nn.Embedding(1, embed_dim) if negative_points else None

    @property
    def supports_negative_points(self) -> bool:
        """Whether label 0 (a negative click) has an embedding."""
        return self.negative_point_embeddings is not None

    def get_dense_pe(self) -> torch.Tensor:
        """Positional code of the image-embedding grid, ``[1, C, h, w]``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Embeds prompt points.

        Args:
            coords: ``[..., N, 2]`` (x, y) pixels of the model's square input.
            labels: ``[..., N]`` labels.

        Returns:
            ``[..., N, C]`` embeddings.
        """
        embedding = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        labels = labels[..., None]
        tables = [(LABEL_PADDING, self.invalid_points), (LABEL_POINT, self.point_embeddings),
                  (LABEL_BOX_TOP_LEFT, self.bbox_top_left_embeddings),
                  (LABEL_BOX_BOTTOM_RIGHT, self.bbox_bottom_right_embeddings)]
        if self.negative_point_embeddings is not None:
            tables.append((LABEL_NEGATIVE, self.negative_point_embeddings))
        for label, table in tables:
            embedding = embedding + table.weight[0] * (labels == label)
        return embedding
