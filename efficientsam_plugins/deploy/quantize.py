"""Post-training static int8 quantization of SqueezeSAM for CPU, through PT2E (torchao's
``prepare_pt2e`` / ``convert_pt2e`` with the x86 inductor quantizer; ``torch.ao``'s copy is
deprecated in torch 2.9).

Only the network after early fusion is quantized: the prompt channels are drawn exactly in fp32
and the fused input is quantized once. Convolutions (and the max-pooling / concatenations
between them) run in int8, per-channel weights and per-tensor activations calibrated on a
handful of images and prompts; the transformer, the heads and the norms stay fp32. Speed comes
from ``torch.compile`` (inductor, with freezing), which lowers the quantized graph to oneDNN int8
kernels; without it the converted model is a reference (quantize -> fp32 op -> dequantize) graph
of the same numbers.

On CPUs without VNNI (AVX2, early AVX-512) oneDNN multiplies uint8 activations by int8 weights
with ``vpmaddubsw``, whose int16 pair sums saturate for activations above 127: measured on an
AVX2 EPYC, a 64-channel 3x3 int8 conv of uniform random full-range inputs and weights is off by 9%
RMS, one of 7-bit inputs is exact. Activations therefore use 7 bits there (``reduce_range``), so
the compiled model computes what the reference graph does.

SqueezeSAM normalises *after* the ReLU (conv -> ReLU -> BatchNorm), so the usual conv-BN fold does
not apply. :func:`fold_batchnorm` folds each BatchNorm's scale into the convolution before the
ReLU (``a * relu(z) == relu(a * z)`` for ``a > 0``); its shift stays a per-channel add (it cannot
enter the next convolution exactly, whose zero padding would see it at the borders).
"""
import contextlib
import copy
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..modeling.common import check_prompts
from ..modeling.squeeze_sam.squeeze_sam import SqueezeSam
from ..modeling.squeeze_sam.unet_decoder import LinearUpsample2x
from ..modeling.squeeze_sam.unet_encoder import ConvReluNorm


class ChannelShift(nn.Module):
    """Adds a per-channel constant to ``[n, C, h, w]``: what remains of a folded BatchNorm."""

    def __init__(self, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer('shift', shift.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def _batchnorm_scale_shift(norm: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


@torch.no_grad()
def fold_batchnorm(model: SqueezeSam) -> Tuple[SqueezeSam, int, int]:
    """An eval-mode copy of ``model`` with every ReLU-then-BatchNorm whose scales are all positive
    folded (see the module docstring): (model, number folded, number left as BatchNorm)."""
    model = copy.deepcopy(model).eval()
    folded = kept = 0
    for module in model.modules():
        if isinstance(module, ConvReluNorm):
            layer = module.conv[0]
        elif isinstance(module, LinearUpsample2x):
            layer = module.upsampler_linear[0]
        else:
            continue
        scale, shift = _batchnorm_scale_shift(module.norm)
        if not bool((scale > 0).all()):  # a negative scale would turn the ReLU into a min(., 0)
            kept += 1
            continue
        layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.ndim - 1)))
        if layer.bias is not None:
            layer.bias.mul_(scale)
        module.norm = ChannelShift(shift)
        folded += 1
    return model, folded, kept


class FusedInputNetwork(nn.Module):
    """SqueezeSAM after early fusion: ``[n, 3 + C, S, S]`` fused inputs to (low-res logits
    ``[n, M, S/p, S/p]``, IoU ``[n, M]``); the part that is exported and quantized."""

    def __init__(self, model: SqueezeSam) -> None:
        super().__init__()
        self.patch_embed = model.patch_embed
        self.unet_encoder = model.unet_encoder
        self.get_iou_predictions_and_mask_tokens = model.get_iou_predictions_and_mask_tokens
        self.unet_decoder = model.unet_decoder
        self.mask_decoder = model.mask_decoder

    def forward(self, fused: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.unet_encoder(self.patch_embed(fused))
        iou_token, mask_tokens, bottom = self.get_iou_predictions_and_mask_tokens(features[-1])
        top = self.unet_decoder(features[:-1], bottom)
        return self.mask_decoder(mask_tokens, iou_token, top)


class Int8SqueezeSam(nn.Module):
    """SqueezeSAM with an int8 network: the fp32 model's early fusion, then the quantized
    :class:`FusedInputNetwork`. Same calls as :class:`SqueezeSam` (``preprocess``,
    ``predict_masks``, ``forward``), so :class:`SqueezeSamPredictor` runs it unchanged."""

    mask_threshold = SqueezeSam.mask_threshold
    img_size = SqueezeSam.img_size
    negative_click_channel = SqueezeSam.negative_click_channel
    previous_mask_channel = SqueezeSam.previous_mask_channel
    preprocess = SqueezeSam.preprocess
    forward = SqueezeSam.forward

    def __init__(self, model: SqueezeSam, network: nn.Module, frozen: bool = False) -> None:
        super().__init__()
        self.early_fusion = model.early_fusion
        self.network = network
        self.frozen = frozen

    def train(self, mode: bool = True) -> 'Int8SqueezeSam':
        """Always in eval mode; the converted graph has no training behaviour (and refuses the call)."""
        self.training = False
        self.early_fusion.eval()
        return self

    def predict_masks(self, images: torch.Tensor, batched_points: torch.Tensor,
                      batched_point_labels: torch.Tensor, input_h: int, input_w: int,
                      previous_masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`SqueezeSam.predict_masks` (which validates the prompts the same way)."""
        check_prompts(images, batched_points, batched_point_labels)
        b, nq = batched_points.shape[:2]
        fused = self.early_fusion(images, batched_points, batched_point_labels, input_h, input_w, previous_masks)
        # Inductor's freezing (read by dynamo when it compiles, at the first call of each shape)
        # makes the int8 weights constants, so quantize / conv / dequantize become oneDNN int8
        # kernels; without it every call dequantizes the weights and runs fp32 convolutions.
        if self.frozen:
            from torch._inductor import config as inductor_config
            freezing = inductor_config.patch(freezing=True)
        else:
            freezing = contextlib.nullcontext()
        with torch.no_grad(), freezing:
            masks, iou = self.network(fused)
        return masks.view(b, nq, *masks.shape[1:]), iou.view(b, nq, -1)


def random_prompts(height: int, width: int, queries: int, generator: torch.Generator,
                   max_clicks: int = 3) -> Tuple[torch.Tensor, torch.Tensor]:
    """``queries`` prompts inside a ``height x width`` image, alternately a box (at least a tenth
    of each side) and 1..``max_clicks`` clicks: ``([Q, N, 2] points, [Q, N] labels)``, -1 padded."""
    n = max(2, max_clicks)
    points, labels = torch.zeros(queries, n, 2), torch.full((queries, n), -1.0)
    scale = torch.tensor([width, height], dtype=torch.float32)
    for q in range(queries):
        if q % 2 == 0:
            corners = torch.rand(2, 2, generator=generator) * scale
            top_left = corners.amin(0).clamp(max=scale * 0.9)
            points[q, :2] = torch.stack([top_left, torch.maximum(corners.amax(0), top_left + scale * 0.1)])
            labels[q, :2] = torch.tensor([2.0, 3.0])
        else:
            clicks = int(torch.randint(1, max_clicks + 1, (1,), generator=generator))
            points[q, :clicks] = torch.rand(clicks, 2, generator=generator) * scale
            labels[q, :clicks] = 1.0
    return points, labels


def calibration_inputs(model: SqueezeSam, images: Iterable[torch.Tensor], queries_per_image: int = 4,
                       seed: int = 0) -> List[torch.Tensor]:
    """Fused network inputs ``[Q, 3 + C, S, S]`` for calibration: each float ``[3, H, W]`` image in
    [0, 1] with ``queries_per_image`` seeded :func:`random_prompts` (activation ranges depend on the
    image far more than on where the prompts fall)."""
    generator = torch.Generator().manual_seed(seed)
    fused = []
    with torch.no_grad():
        for image in images:
            h, w = image.shape[-2:]
            points, labels = random_prompts(h, w, queries_per_image, generator)
            fused.append(model.early_fusion(model.preprocess(image[None]), points[None], labels[None], h, w))
    return fused


def cpu_has_vnni() -> bool:
    """Whether this CPU has AVX-512 or AVX VNNI (Linux ``/proc/cpuinfo``; elsewhere assumed not)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
    except OSError:
        return False
    return 'avx512_vnni' in flags or 'avx_vnni' in flags


def quantize_int8(model: SqueezeSam, calibration: Sequence[torch.Tensor], compile: bool = True,
                  max_queries: int = 64, reduce_range: Optional[bool] = None) -> Int8SqueezeSam:
    """Int8 SqueezeSAM from an fp32 one and fused calibration inputs (:func:`calibration_inputs`).

    ``compile=True`` lowers the converted graph with inductor, frozen (needs a C++ compiler; the
    first call of each query count compiles, for minutes at 512x512); ``False`` keeps the
    reference graph (same results up to rounding, slower than fp32: for checking agreement). The
    query batch is dynamic up to ``max_queries``. ``reduce_range`` (7-bit activations) defaults to
    this CPU's lack of VNNI (see the module docstring).
    """
    if not calibration:
        raise ValueError('int8 calibration needs at least one fused input batch')
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as err:
        raise ImportError('int8 SqueezeSAM needs torchao (pip install torchao)') from err
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    folded, _, _ = fold_batchnorm(model)
    network = FusedInputNetwork(folded).eval()
    queries = torch.export.Dim('queries', min=1, max=max_queries)
    example = calibration[0][:2] if calibration[0].shape[0] >= 2 else calibration[0].repeat(2, 1, 1, 1)
    with torch.no_grad():
        # Strict (dynamo) export: the quantizer finds its conv/linear patterns by their source modules.
        exported = torch.export.export(network, (example,), dynamic_shapes=({0: queries},),
                                       strict=True).module()
        # Convolutions only: the transformer and the heads work on a few tokens at the coarsest
        # level, so int8 would add error there and save nothing.
        quantizer = x86.X86InductorQuantizer().set_module_type_qconfig(
            nn.Conv2d, x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
        prepared = prepare_pt2e(exported, quantizer)
        for fused in calibration:
            prepared(fused)
        converted = convert_pt2e(prepared)
    if compile:
        converted = torch.compile(converted, dynamic=True)
    return Int8SqueezeSam(model, converted, frozen=compile)


@torch.no_grad()
def recalibrate_batchnorm(model: SqueezeSam, calibration: Sequence[torch.Tensor]) -> SqueezeSam:
    """Sets every BatchNorm's running statistics, in place, to the cumulative ones of the fused
    ``calibration`` inputs. For random-weight stand-ins (SqueezeSAM's trained weights were never
    published): their activations then have a trained model's scale, so masks are neither all
    on nor all off and quantization error shows in them."""
    network = FusedInputNetwork(model)
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    network.train()
    for fused in calibration:
        network(fused)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    return model
