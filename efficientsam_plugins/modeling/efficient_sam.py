"""EfficientSAM: the core ViT encoder + prompt encoder + two-way mask decoder.

Keeps the official module layout, parameter names and call signature (``forward``,
``get_image_embeddings``, ``predict_masks``), so released checkpoints load strictly and code
written for the official model runs unchanged.
"""
from typing import Any, Dict, Mapping, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import LABEL_PADDING, PIXEL_MEAN, PIXEL_STD, check_prompts, merge_config
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .vit import VIT_ARCHS, ViT

# Full-size settings of the released models; a config dict overrides any of them. negative_points
# adds the negative-click embedding the released models lack (label 0; trained by finetuning).
DEFAULT_CONFIG: Dict[str, Any] = dict(
    img_size=1024, patch_size=16, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0,
    neck_dims=[256, 256], dec_depth=2, dec_heads=8, dec_mlp_dim=2048, upscaling=[64, 32],
    num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256,
    decoder_max_num_input_points=6, negative_points=False)
NAMED_CONFIGS: Dict[str, Dict[str, Any]] = {name: dict(VIT_ARCHS[name]) for name in ('ti', 's')}  # ViT-Ti, ViT-S
_IGNORED_CONFIG_KEYS = {'seed'}  # recorded by the reference files, not an architecture setting


class EfficientSam(nn.Module):
    """EfficientSAM, the promptable segmentation model; images are float ``[B, 3, H, W]`` RGB in [0, 1].

    Build it with :func:`efficientsam_plugins.build.build_efficient_sam` (or ``build_model``).

    Args:
        image_encoder: the ViT with SAM's neck (:func:`build_image_encoder`).
        prompt_encoder: embeds point and box-corner prompts.
        decoder_max_num_input_points: points per query the decoder takes (prompts are padded or cut to it).
        mask_decoder: the two-way transformer decoder of masks and IoU predictions.
        pixel_mean: RGB mean of the input normalisation (images in [0, 1]).
        pixel_std: RGB standard deviation of the input normalisation.
    """

    mask_threshold: float = 0.0

    def __init__(self, image_encoder: ViT, prompt_encoder: PromptEncoder,
                 decoder_max_num_input_points: int, mask_decoder: MaskDecoder,
                 pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.decoder_max_num_input_points = decoder_max_num_input_points
        self.mask_decoder = mask_decoder
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean).view(1, 3, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std).view(1, 3, 1, 1), False)

    @property
    def img_size(self) -> int:
        """The side of the square input the image encoder takes."""
        return self.image_encoder.img_size

    def get_rescaled_pts(self, batched_points: torch.Tensor, input_h: int, input_w: int) -> torch.Tensor:
        """Pixel coordinates of the original image to the model's square input.

        Args:
            batched_points: ``[..., 2]`` (x, y) pixels of the original image; negative ones are padding.
            input_h: the original image's height.
            input_w: the original image's width.

        Returns:
            The points in input pixels, padding as -1.
        """
        scale = batched_points.new_tensor([self.img_size / input_w, self.img_size / input_h])
        return torch.where(batched_points >= 0, batched_points * scale, batched_points.new_tensor(-1.0))

    def predict_masks(self, image_embeddings: torch.Tensor, batched_points: torch.Tensor,
                      batched_point_labels: torch.Tensor, multimask_output: bool, input_h: int,
                      input_w: int, output_h: int = -1, output_w: int = -1) -> Tuple[torch.Tensor, torch.Tensor]:
        """The decoder alone, on image embeddings from :meth:`get_image_embeddings`.

        Args:
            image_embeddings: ``[B, C, h, w]``.
            batched_points: ``[B, Q, N, 2]`` (x, y) pixels of the ``input_h x input_w`` image.
            batched_point_labels: ``[B, Q, N]``: 1 point, 2/3 box corners, -1 padding, 0 negative
                point (with ``negative_points``).
            multimask_output: three candidate masks per query (True) or one.
            input_h: the height of the image the points are pixels of.
            input_w: its width.
            output_h: upsample the logits (bicubic) to this height when it and ``output_w`` are positive.
            output_w: the width to upsample to.

        Returns:
            ``(logits [B, Q, M, 4h, 4w], iou_predictions [B, Q, M])`` (logits at ``output_h x
            output_w`` when given), M = 3 or 1.

        Raises:
            ValueError: for prompts of the wrong shape.
        """
        check_prompts(image_embeddings, batched_points, batched_point_labels)
        sparse = self.encode_prompts(self.get_rescaled_pts(batched_points, input_h, input_w), batched_point_labels)
        low_res, iou = self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(),
                                         sparse, multimask_output)
        if output_h > 0 and output_w > 0:
            low_res = F.interpolate(low_res, (output_h, output_w), mode='bicubic')
        b, nq = batched_points.shape[:2]
        return low_res.view(b, nq, *low_res.shape[1:]), iou.view(b, nq, -1)

    def encode_prompts(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The decoder's sparse prompt tokens.

        The decoder takes a fixed number of points P, so prompts are padded with label -1, or cut
        as the released model does (the predictor refuses longer prompts instead; only the
        low-level calls cut). Pad-then-cut holds for every N in a traced graph.

        Args:
            points: ``[B, Q, N, 2]`` points in input pixels.
            labels: ``[B, Q, N]`` labels.

        Returns:
            ``[B, Q, P, C]`` tokens.
        """
        limit = self.decoder_max_num_input_points
        points = F.pad(points, (0, 0, 0, limit), value=-1.0)[:, :, :limit]
        labels = F.pad(labels, (0, limit), value=float(LABEL_PADDING))[:, :, :limit]
        return self.prompt_encoder(points, labels)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resizes (bilinear, to the square input; aspect ratio is not kept) and normalises.

        Args:
            x: ``[B, 3, H, W]`` RGB in [0, 1].

        Returns:
            ``[B, 3, img_size, img_size]`` normalised images.
        """
        if x.shape[-2:] != (self.img_size, self.img_size):
            x = F.interpolate(x, (self.img_size, self.img_size), mode='bilinear')
        return (x - self.pixel_mean) / self.pixel_std

    def get_image_embeddings(self, batched_images: torch.Tensor) -> torch.Tensor:
        """The image encoder's embeddings.

        Args:
            batched_images: ``[B, 3, H, W]`` RGB in [0, 1] (any size: resized to the input).

        Returns:
            ``[B, C, h, w]`` embeddings.

        Raises:
            ValueError: for images that are not ``[B, 3, H, W]``.
        """
        if batched_images.ndim != 4 or batched_images.shape[1] != 3:
            raise ValueError(f'batched_images must be [B, 3, H, W], got {tuple(batched_images.shape)}')
        return self.image_encoder(self.preprocess(batched_images))

    def forward(self, batched_images: torch.Tensor, batched_points: torch.Tensor,
                batched_point_labels: torch.Tensor,
                scale_to_original_image_size: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images and prompts to masks, as the official model's call.

        Args:
            batched_images: ``[B, 3, H, W]`` RGB in [0, 1].
            batched_points: ``[B, Q, N, 2]`` (x, y) pixels of the images.
            batched_point_labels: ``[B, Q, N]`` labels (see :meth:`predict_masks`).
            scale_to_original_image_size: upsample the logits to ``H x W`` (else ``4h x 4w``).

        Returns:
            ``(mask_logits [B, Q, 3, H, W], iou_predictions [B, Q, 3])``.
        """
        _, _, input_h, input_w = batched_images.shape
        embeddings = self.get_image_embeddings(batched_images)
        out_h, out_w = (input_h, input_w) if scale_to_original_image_size else (-1, -1)
        return self.predict_masks(embeddings, batched_points, batched_point_labels, True,
                                  input_h, input_w, out_h, out_w)


def resolve_config(config: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A full EfficientSAM architecture config.

    Args:
        config: ``'ti'``, ``'s'`` or a dict of overrides of :data:`DEFAULT_CONFIG`.

    Returns:
        Every key of :data:`DEFAULT_CONFIG`, checked.

    Raises:
        ValueError: for an unknown name or key, or a value of the wrong kind.
    """
    if isinstance(config, str):
        if config not in NAMED_CONFIGS:
            raise ValueError(f'unknown EfficientSAM config {config!r}; expected one of '
                             f'{sorted(NAMED_CONFIGS)} or a dict')
        return {**DEFAULT_CONFIG, **NAMED_CONFIGS[config]}
    return merge_config('EfficientSAM', config, DEFAULT_CONFIG, _IGNORED_CONFIG_KEYS)


def build_image_encoder(config: Union[str, Mapping[str, Any]] = 'ti') -> ViT:
    """EfficientSAM's image encoder: the core ViT with SAM's neck.

    Args:
        config: anything :func:`resolve_config` takes.

    Returns:
        The :class:`~efficientsam_plugins.modeling.vit.ViT`, randomly initialised.
    """
    cfg = resolve_config(config)
    return ViT(arch=dict(embed_dim=cfg['embed_dim'], depth=cfg['depth'], num_heads=cfg['num_heads']),
               img_size=cfg['img_size'], patch_size=cfg['patch_size'], mlp_ratio=cfg['mlp_ratio'],
               neck_dims=list(cfg['neck_dims']))
