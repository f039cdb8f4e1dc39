"""ONNX graphs of EfficientSAM and SqueezeSAM, in the contracts deployment clients speak.

Contracts (``contract=``; the folder's ``export.json`` records which):

``'efficientsam'`` (EfficientSAM's default): the official two-graph export of yformer/EfficientSAM
    (``export_to_onnx.py`` / ``onnx_models.py``), which osam (labelme's AI polygons), samexporter's
    ``EfficientSAMONNX`` and the official example run unmodified. ``encoder.onnx``:
    ``batched_images`` float32 ``[B, 3, H, W]`` RGB in [0, 1] (any H, W; resized and normalised in
    the graph) to ``image_embeddings``. ``decoder.onnx``: ``image_embeddings``,
    ``batched_point_coords`` float32 ``[B, Q, N, 2]`` (x, y pixels of the original image),
    ``batched_point_labels`` float32 ``[B, Q, N]`` (1 point, 2/3 box corners, -1 padding) and
    ``orig_im_size`` int64 ``(H, W)`` to exactly the official three outputs, in the official order:
    ``output_masks`` ``[B, Q, 3, H, W]`` logits, ``iou_predictions`` ``[B, Q, 3]`` and
    ``low_res_masks`` ``[B*Q, 3, 4h, 4w]``. Candidates come sorted by predicted IoU (the official
    graph keeps the decoder's token order), so a client that keeps candidate 0, as osam does, gets
    the best one. Batch, query and point axes are all dynamic (a client feeding Q = 1 sees the
    official behaviour). What the project's predictor needs beyond that (unsorted low-resolution
    logits of both heads) is a third graph, ``decoder_heads.onnx``, which no client opens.
``'sam'``: segment-anything's ONNX contract as AnyLabeling and X-AnyLabeling call it (their
    ``SegmentAnythingONNX``): ``sam_encoder.onnx`` takes ``input_image`` float32 ``[H, W, 3]`` RGB
    in 0..255 (the tools send the image warped top-left into a 684x1024 canvas) and applies
    EfficientSAM's own preprocessing to that canvas; ``sam_decoder.onnx`` takes
    ``image_embeddings``, ``point_coords`` ``[B, N, 2]`` in SAM's frame (long side 1024),
    ``point_labels`` ``[B, N]`` (1, 0 negative, 2/3 box corners, -1 padding), ``mask_input``,
    ``has_mask_input`` and ``orig_im_size`` float32 ``(H, W)`` and returns ``masks``
    ``[B, 3, H, W]`` logits, ``iou_predictions`` ``[B, 3]`` and ``low_res_masks``, highest predicted
    IoU first. EfficientSAM has no mask prompt: ``mask_input`` and ``has_mask_input`` are accepted
    and ignored. The folder also gets the tools' model YAML (:data:`SAM_TOOL_CONFIG`).
``'opencv'``: one static graph for OpenCV's dnn module (``cv2.dnn.readNetFromONNX``), the contract of
    OpenCV Zoo's EfficientSAM demo: ``batched_images`` float32 ``[1, 3, S, S]`` RGB in [0, 1] already
    resized to the model's input size S, ``batched_point_coords`` ``[1, 1, P, 2]`` in that S x S frame
    and ``batched_point_labels`` ``[1, 1, P]``, P the model's point count (6), padded with label -1,
    to ``output_masks`` ``[1, 1, 3, S, S]`` and ``iou_predictions`` ``[1, 1, 3]``, highest IoU first.
    OpenCV runs neither dynamic shapes nor cubic resizing: the graph is constant-folded by
    onnxruntime's basic optimiser before it is written, and the bicubic upsampling, as in every
    graph here, is two matrix products (:func:`_upsample_bicubic`).
``'squeezesam'`` (SqueezeSAM's only): one graph, ``squeeze_sam.onnx``. SqueezeSAM fuses the prompts
    into the network input, so it has no image-only encoder whose output a per-prompt decoder could
    reuse; osam, samexporter, AnyLabeling and X-AnyLabeling all encode once and decode per prompt
    and so cannot run it. Its graph runs in the project's onnxruntime predictor.

A folder is written to a temporary folder beside it and renamed into place when complete: an
interrupted export leaves the previous folder as it was (the next export removes the leftover).
``export.json`` records each graph's sha256 and the architecture (also stamped into every graph's
metadata); :func:`check_export` verifies both before anything runs.

Exported with the TorchScript exporter (``dynamo=False``): the dynamo exporter specialises the
query axis at 1 (the image tokens are shared by the queries and broadcast), cannot express the
output size read from ``orig_im_size``, and fails to convert its opset-18 graphs down to 17.
"""
import copy
import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fileio import sha256_file
from ..modeling.common import LABEL_PADDING
from ..modeling.efficient_sam import EfficientSam
from ..modeling.squeeze_sam import SqueezeSam
from ..modeling.vit import resize_abs_pos

MANIFEST_FILE = 'export.json'
MANIFEST_FORMAT = 2
# contract -> graph role -> file name
CONTRACT_GRAPHS = {
    'efficientsam': {'encoder': 'encoder.onnx', 'decoder': 'decoder.onnx', 'decoder_heads': 'decoder_heads.onnx'},
    'sam': {'encoder': 'sam_encoder.onnx', 'decoder': 'sam_decoder.onnx'},
    'opencv': {'model': 'efficientsam_opencv.onnx'},
    'squeezesam': {'model': 'squeeze_sam.onnx'},
}
FAMILY_CONTRACTS = {'efficientsam': ('efficientsam', 'sam', 'opencv'), 'squeezesam': ('squeezesam',)}
INT8_GRAPHS = {'efficientsam': ('encoder',), 'sam': ('encoder',), 'opencv': (), 'squeezesam': ('model',)}  # heavy
INT8_SUFFIX = '.int8.onnx'
SUPPORTED_OPSETS = range(17, 21)  # LayerNormalization needs 17; 20 is the TorchScript exporter's newest
PROMPT_AXES = {0: 'batch', 1: 'num_queries', 2: 'num_points'}
OFFICIAL_DECODER_OUTPUTS = ('output_masks', 'iou_predictions', 'low_res_masks')
HEADS_OUTPUTS = ('low_res_logits', 'iou_predictions', 'single_mask_low_res_logits', 'single_mask_iou_predictions')
SAM_DECODER_INPUTS = ('image_embeddings', 'point_coords', 'point_labels', 'mask_input', 'has_mask_input',
                      'orig_im_size')
SAM_DECODER_OUTPUTS = ('masks', 'iou_predictions', 'low_res_masks')
SAM_CANVAS = (684, 1024)  # (H, W) of the canvas AnyLabeling / X-AnyLabeling warp every image into
SAM_TARGET_LENGTH = 1024  # the long side of SAM's input frame, the frame of the tools' point coordinates
SAM_TOOL_CONFIG = 'anylabeling_efficientsam.yaml'
METADATA_KEY = 'efficientsam_plugins.export'  # graph metadata: {"export_id", "architecture"} as JSON


def require_export_extra():
    """onnxruntime (after checking that onnx imports too), or an ImportError naming the extra."""
    try:
        import onnx  # noqa: F401  (the exporter's checker, the graph metadata)
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export and inference need onnx and onnxruntime ({err.name} is missing): "
                          f"pip install 'efficientsam_plugins[export]'") from err
    return onnxruntime


def _sorted_by_iou(masks: torch.Tensor, iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[R, M, h, w]`` masks and ``[R, M]`` IoUs with each row's candidates in descending IoU (ties
    keep their order). Ranks by comparison and a one-hot matrix product instead of TopK/Gather, which
    OpenCV's dnn cannot run for K = M; exact, as every output is one input times 1 plus zeros."""
    candidates = iou.shape[1]
    dtype = iou.dtype  # float arithmetic throughout: OpenCV's dnn reads no boolean constants
    beaten_by = (iou[:, None, :] > iou[:, :, None]).to(dtype)  # [R, i, j]: candidate j ranks before i
    tie_before = (iou[:, None, :] == iou[:, :, None]).to(dtype) * torch.ones(candidates, candidates).tril(-1)
    rank = (beaten_by + tie_before).sum(-1)  # [R, M]
    permutation = (rank[:, None, :] == torch.arange(candidates, dtype=dtype)[None, :, None]).to(dtype)
    ordered = permutation @ masks.flatten(2)
    return ordered.view(masks.shape), (permutation @ iou[:, :, None])[..., 0]


def _cubic_matrix(out_size, in_size: int) -> torch.Tensor:
    """``[out, in]`` matrix of PyTorch's bicubic resampling along one axis (``align_corners=False``,
    A = -0.75, edge taps clamped), ``out_size`` an int or a traced 0-d tensor."""
    a = -0.75
    source = (torch.arange(out_size, dtype=torch.float32) + 0.5) * (in_size / out_size) - 0.5
    first = torch.floor(source)
    t = (source - first)[:, None]
    distance = torch.cat([t + 1, t, 1 - t, 2 - t], 1)  # to the taps first - 1 .. first + 2
    near = ((a + 2) * distance - (a + 3)) * distance * distance + 1
    far = ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
    weights = torch.where(distance <= 1, near, far)
    taps = (first[:, None] + torch.arange(-1, 3, dtype=torch.float32)).clamp(0, in_size - 1)
    return (weights[:, :, None] * (taps[:, :, None] == torch.arange(in_size, dtype=torch.float32))).sum(1)


def _upsample_bicubic(logits: torch.Tensor, height, width) -> torch.Tensor:
    """``F.interpolate(logits, (height, width), mode='bicubic')`` as two matrix products: the same
    numbers (to float rounding), where onnxruntime's cubic Resize takes ~50x longer (1.5 s for
    three 603 x 1072 masks on two cores)."""
    in_h, in_w = logits.shape[-2:]
    return _cubic_matrix(height, in_h) @ logits @ _cubic_matrix(width, in_w).transpose(0, 1)


def _multimask(model: EfficientSam, masks: torch.Tensor, iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The multi-mask head's candidates of :meth:`MaskDecoder.predict_all_masks`' outputs."""
    multi = slice(1, None) if model.mask_decoder.num_multimask_outputs > 1 else slice(0, 1)
    return masks[:, multi], iou[:, multi]


class EfficientSamEncoderGraph(nn.Module):
    """``batched_images`` ``[B, 3, H, W]`` RGB in [0, 1], any H and W, to ``image_embeddings``.

    Always resizes (bilinear): at the model's input size that is the identity, and a traced
    branch on the input size would freeze the graph to the example's size."""

    def __init__(self, model: EfficientSam) -> None:
        super().__init__()
        self.model = model

    def forward(self, batched_images: torch.Tensor) -> torch.Tensor:
        model = self.model
        images = F.interpolate(batched_images, (model.img_size, model.img_size), mode='bilinear')
        return model.image_encoder((images - model.pixel_mean) / model.pixel_std)


class EfficientSamPromptGraph(nn.Module):
    """The decoder of the official contract (``heads=False``, :data:`OFFICIAL_DECODER_OUTPUTS`) or
    the project predictor's (``heads=True``, :data:`HEADS_OUTPUTS`: unsorted low-resolution logits
    of the multi-mask and the single-mask heads from one transformer pass).

    :meth:`EfficientSam.encode_prompts` pads and cuts the prompts to the model's fixed point count
    for every N in one graph."""

    def __init__(self, model: EfficientSam, heads: bool) -> None:
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, image_embeddings: torch.Tensor, batched_point_coords: torch.Tensor,
                batched_point_labels: torch.Tensor, orig_im_size: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model = self.model
        scale = model.img_size / orig_im_size.flip(0).to(batched_point_coords.dtype)  # (x, y) factors
        points = torch.where(batched_point_coords >= 0, batched_point_coords * scale, -1.0)
        sparse = model.encode_prompts(points, batched_point_labels)
        masks, iou = model.mask_decoder.predict_all_masks(image_embeddings, model.prompt_encoder.get_dense_pe(),
                                                          sparse)
        queries = sparse.shape[:2]
        multi_masks, multi_iou = _multimask(model, masks, iou)
        if self.heads:
            return (multi_masks.unflatten(0, queries), multi_iou.unflatten(0, queries),
                    masks[:, :1].unflatten(0, queries), iou[:, :1].unflatten(0, queries))
        low_res, iou = _sorted_by_iou(multi_masks, multi_iou)
        full = _upsample_bicubic(low_res, orig_im_size[0], orig_im_size[1])
        return full.unflatten(0, queries), iou.unflatten(0, queries), low_res


class SamContractEncoderGraph(nn.Module):
    """``input_image`` ``[H, W, 3]`` float RGB in 0..255 (the tool's canvas) to ``image_embeddings``
    ``[1, C, h, w]``: EfficientSAM's preprocessing (bilinear resize of the whole canvas to the
    square input, normalisation), as :class:`EfficientSamEncoderGraph` on ``canvas / 255``."""

    def __init__(self, model: EfficientSam) -> None:
        super().__init__()
        self.encoder = EfficientSamEncoderGraph(model)

    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_image.permute(2, 0, 1)[None] / 255)


class SamContractDecoderGraph(nn.Module):
    """SAM's decoder contract (:data:`SAM_DECODER_INPUTS` to :data:`SAM_DECODER_OUTPUTS`) on
    EfficientSAM: points in SAM's frame (the ``orig_im_size`` image scaled to a long side of 1024)
    are mapped to EfficientSAM's square input; SAM's padding point (label -1, any coordinates) becomes
    EfficientSAM's padding (-1, -1); the multi-mask candidates come highest predicted IoU first.
    ``mask_input`` / ``has_mask_input`` do not reach the graph (EfficientSAM takes no mask prompt);
    :func:`_add_ignored_inputs` declares them so the tools' feeds are accepted."""

    def __init__(self, model: EfficientSam) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                orig_im_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.model
        size = orig_im_size.to(point_coords.dtype)
        scale = model.img_size * size.max() / (SAM_TARGET_LENGTH * size.flip(0))  # (x, y) factors
        padding = (point_labels == LABEL_PADDING)[..., None]
        points = torch.where(padding, -1.0, point_coords * scale)
        sparse = model.encode_prompts(points[:, None], point_labels[:, None])
        masks, iou = model.mask_decoder.predict_all_masks(image_embeddings, model.prompt_encoder.get_dense_pe(),
                                                          sparse)
        low_res, iou = _sorted_by_iou(*_multimask(model, masks, iou))
        height, width = orig_im_size.to(torch.int64)
        return _upsample_bicubic(low_res, height, width), iou, low_res


class OpenCvGraph(nn.Module):
    """The ``'opencv'`` contract's one graph (module docstring): static shapes, the prompts already in
    the model's square frame and exactly ``decoder_max_num_input_points`` long (no padding ops)."""

    def __init__(self, model: EfficientSam) -> None:
        super().__init__()
        self.model = model

    def forward(self, batched_images: torch.Tensor, batched_point_coords: torch.Tensor,
                batched_point_labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        embeddings = model.image_encoder((batched_images - model.pixel_mean) / model.pixel_std)
        padding = (batched_point_labels == LABEL_PADDING)[..., None]
        sparse = model.prompt_encoder(torch.where(padding, -1.0, batched_point_coords), batched_point_labels)
        masks, iou = model.mask_decoder.predict_all_masks(embeddings, model.prompt_encoder.get_dense_pe(), sparse)
        low_res, iou = _sorted_by_iou(*_multimask(model, masks, iou))
        full = _upsample_bicubic(low_res, model.img_size, model.img_size)
        return full.unflatten(0, sparse.shape[:2]), iou.unflatten(0, sparse.shape[:2])


def _fixed_position_embedding(model: EfficientSam) -> None:
    """Resizes the ViT's absolute position embedding to the model's token grid once, in place (on the
    export's copy): the released weights keep a 14 x 14 table that every forward pass resizes
    (bicubic) to the grid, a constant the graphs would recompute per call and OpenCV cannot (no cubic
    resizing)."""
    encoder = model.image_encoder
    grid = model.img_size // encoder.patch_size
    with torch.no_grad():
        table = resize_abs_pos(encoder.pos_embed, encoder.pretrain_use_cls_token, (grid, grid))
    encoder.pos_embed = nn.Parameter(table.reshape(1, grid * grid, -1))
    encoder.pretrain_use_cls_token = False


def _constant_folded(path: str) -> None:
    """Rewrites the graph at ``path`` as onnxruntime's basic optimiser leaves it (constants folded,
    shape arithmetic gone; standard operators only), which OpenCV's importer needs."""
    ort = require_export_extra()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    folded = path[:-len('.onnx')] + '.folded.onnx'
    options.optimized_model_filepath = folded
    ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    os.replace(folded, path)


class SqueezeSamGraph(nn.Module):
    """SqueezeSAM's one graph: ``batched_images`` ``[B, 3, H, W]`` in [0, 1] and the prompts (fused
    into the network input, so no part runs once per image) to ``output_masks`` ``[B, Q, 3, H, W]``,
    ``iou_predictions`` and ``low_res_logits``; the original size is the image's own."""

    def __init__(self, model: SqueezeSam) -> None:
        super().__init__()
        self.model = model

    def forward(self, batched_images: torch.Tensor, batched_point_coords: torch.Tensor,
                batched_point_labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        input_h, input_w = batched_images.shape[-2:]
        low_res, iou = self.model.predict_masks(self.model.preprocess(batched_images), batched_point_coords,
                                                batched_point_labels, input_h, input_w)
        return _upsample_bicubic(low_res, input_h, input_w), iou, low_res


def export_graph(module: nn.Module, example: Tuple[torch.Tensor, ...], path: str, input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_axes: Dict[str, Dict[int, str]], opset: int) -> None:
    """``module`` traced on ``example`` to an ONNX file at ``path`` (inside the export's temporary folder)."""
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns at every shape read and constant folding at every strided slice; the
        # tests check the dynamic axes and the outputs instead.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', 'Constant folding', UserWarning)
        # dynamo=False is chosen (module docstring); torch's notices about that choice are noise here.
        warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'torch\.onnx')
        warnings.filterwarnings('ignore', 'You are using the legacy TorchScript', DeprecationWarning)
        torch.onnx.export(module.eval(), example, path, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def _add_ignored_inputs(path: str) -> None:
    """Declares SAM's ``mask_input`` ``[1, 1, 256, 256]`` and ``has_mask_input`` ``[1]`` (float32)
    on the SAM-contract decoder, in SAM's input order; no node reads them."""
    import onnx
    graph_model = onnx.load(path)
    inputs = {value.name: value for value in graph_model.graph.input}
    inputs['mask_input'] = onnx.helper.make_tensor_value_info('mask_input', onnx.TensorProto.FLOAT,
                                                              [1, 1, 'mask_height', 'mask_width'])
    inputs['has_mask_input'] = onnx.helper.make_tensor_value_info('has_mask_input', onnx.TensorProto.FLOAT, [1])
    del graph_model.graph.input[:]
    graph_model.graph.input.extend(inputs[name] for name in SAM_DECODER_INPUTS)
    onnx.save(graph_model, path)


def _stamp(path: str, stamp: str) -> None:
    """Writes the export's id and architecture into the graph's metadata (checked on loading)."""
    import onnx
    graph_model = onnx.load(path)
    entry = graph_model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, stamp
    onnx.save(graph_model, path)


def quantize_int8(source: str, target: str) -> None:
    """onnxruntime's dynamic int8 quantization of the MatMul/Gemm weights (activations stay float,
    scaled per call), so no calibration data is needed; convolutions stay float. The graph is first
    shape-inferred and optimised (onnxruntime's recommended pre-processing, without its symbolic
    shape inference, which cannot follow the reshapes of the dynamic query axis)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(target))) as scratch:
        prepared = os.path.join(scratch, 'prepared.onnx')
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        quantize_dynamic(prepared, target, op_types_to_quantize=['MatMul', 'Gemm'], weight_type=QuantType.QInt8)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out_dir: str):
    """``(path, kind)`` of the staging folders of ``out_dir`` left by exports that are no longer
    running: ``'.NAME.PID.tmp'`` (an unfinished export) and ``'.NAME.PID.old'`` (the previous
    folder, mid-swap)."""
    parent, name = os.path.split(out_dir)
    for entry in os.listdir(parent):
        prefix, _, rest = entry.partition(f'.{name}.')
        pid, _, kind = rest.partition('.')
        if prefix == '' and rest and pid.isdigit() and kind in ('tmp', 'old') and not _pid_alive(int(pid)):
            yield os.path.join(parent, entry), kind


def check_out_dir(out_dir: str) -> str:
    """The absolute path of ``out_dir`` if an export can be (re)placed there, else one clear error:
    a file, a folder that is not an export folder (its files would be replaced), an unwritable parent."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f'output folder {out_dir} is a file, not a folder')
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MANIFEST_FILE)):
        raise FileExistsError(f'output folder {out_dir} exists and is not an ONNX export folder (no '
                              f'{MANIFEST_FILE}); the export replaces the whole folder, so give a new or empty one')
    existing = parent
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK):
        raise PermissionError(f'folder {existing} is not writable (the export is staged beside {out_dir})')
    return out_dir


def _clean_leftovers(out_dir: str) -> None:
    """Removes what killed exports of ``out_dir`` left; a previous folder caught mid-swap comes back."""
    for path, kind in _leftovers(out_dir):
        if kind == 'old' and not os.path.exists(out_dir):
            os.replace(path, out_dir)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _swap_into_place(staged: str, out_dir: str) -> None:
    previous = None
    if os.path.exists(out_dir):
        previous = os.path.join(os.path.dirname(out_dir), f'.{os.path.basename(out_dir)}.{os.getpid()}.old')
        os.replace(out_dir, previous)
    os.replace(staged, out_dir)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def check_request(family: str, contract: Optional[str], opset: int, quantize: Optional[str]) -> str:
    """Refuses, before any weights are loaded or any file written, what the export of a model of
    ``family`` could not do; returns the contract (None: the family's default)."""
    require_export_extra()
    contract = contract or FAMILY_CONTRACTS[family][0]
    if contract not in CONTRACT_GRAPHS:
        raise ValueError(f'unknown contract {contract!r}: expected one of {", ".join(CONTRACT_GRAPHS)}')
    if contract not in FAMILY_CONTRACTS[family]:
        if family == 'squeezesam':
            raise ValueError(f'SqueezeSAM cannot be exported to the {contract!r} contract: it fuses the prompts '
                             'into the network input, so it has no image encoder whose output a per-prompt '
                             'decoder could reuse, which is what osam/labelme, samexporter, AnyLabeling and '
                             "X-AnyLabeling all run; export it with contract 'squeezesam' (the project's "
                             'onnxruntime predictor)')
        raise ValueError(f"EfficientSAM exports to the {' or '.join(FAMILY_CONTRACTS[family])} contract, "
                         f'not {contract!r}')
    if opset not in SUPPORTED_OPSETS:
        problem = 'too low' if opset < SUPPORTED_OPSETS.start else "newer than torch's TorchScript exporter writes"
        raise ValueError(f'opset {opset} is {problem} for the {contract!r} contract: use '
                         f'{SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} (LayerNormalization needs 17)')
    if quantize not in (None, 'int8'):
        raise ValueError(f'unknown quantization {quantize!r}; only int8 is supported')
    if quantize and not INT8_GRAPHS[contract]:
        raise ValueError(f'the {contract!r} contract has no int8 form (OpenCV runs no int8 dynamic quantization); '
                         f'export it without --quantize')
    return contract


def _write_graphs(model: nn.Module, contract: str, folder: str, opset: int) -> None:
    """Traces the contract's graphs into ``folder``."""
    size = model.img_size
    graphs = CONTRACT_GRAPHS[contract]
    path = {role: os.path.join(folder, file) for role, file in graphs.items()}
    image_axes = {0: 'batch', 2: 'height', 3: 'width'}
    if contract == 'squeezesam':
        example = (torch.rand(1, 3, size // 2 + 3, size + 5), torch.rand(1, 2, 3, 2) * (size // 2),
                   torch.ones(1, 2, 3))
        mask_axes = {0: 'batch', 1: 'num_queries'}
        export_graph(SqueezeSamGraph(model), example, path['model'],
                     ['batched_images', 'batched_point_coords', 'batched_point_labels'],
                     ['output_masks', 'iou_predictions', 'low_res_logits'],
                     {'batched_images': image_axes, 'batched_point_coords': PROMPT_AXES,
                      'batched_point_labels': PROMPT_AXES, 'output_masks': {**mask_axes, 3: 'height', 4: 'width'},
                      'iou_predictions': mask_axes, 'low_res_logits': mask_axes}, opset)
        return
    if contract == 'opencv':
        points = model.decoder_max_num_input_points
        labels = torch.full((1, 1, points), float(LABEL_PADDING))
        labels[..., :3] = torch.tensor([2.0, 3.0, 1.0])
        export_graph(OpenCvGraph(model), (torch.rand(1, 3, size, size), torch.rand(1, 1, points, 2) * size, labels),
                     path['model'], ['batched_images', 'batched_point_coords', 'batched_point_labels'],
                     ['output_masks', 'iou_predictions'], {}, opset)
        _constant_folded(path['model'])
        return
    with torch.no_grad():
        embeddings = model.get_image_embeddings(torch.rand(1, 3, size, size))
    if contract == 'sam':
        export_graph(SamContractEncoderGraph(model), (torch.rand(*SAM_CANVAS, 3) * 255,), path['encoder'],
                     ['input_image'], ['image_embeddings'], {'input_image': {0: 'height', 1: 'width'}}, opset)
        example = (embeddings, torch.rand(1, 3, 2) * 600, torch.tensor([[2.0, 3.0, -1.0]]),
                   torch.tensor([float(SAM_CANVAS[0]), float(SAM_CANVAS[1])]))
        point_axes = {0: 'batch', 1: 'num_points'}
        export_graph(SamContractDecoderGraph(model), example, path['decoder'],
                     [name for name in SAM_DECODER_INPUTS if 'mask_input' not in name], SAM_DECODER_OUTPUTS,
                     {'point_coords': point_axes, 'point_labels': point_axes,
                      'masks': {0: 'batch', 2: 'height', 3: 'width'}, 'iou_predictions': {0: 'batch'},
                      'low_res_masks': {0: 'batch'}}, opset)
        _add_ignored_inputs(path['decoder'])
        return
    example_image = torch.rand(1, 3, size // 2 + 3, size + 5)  # not square: any size resizes in the graph
    export_graph(EfficientSamEncoderGraph(model), (example_image,), path['encoder'], ['batched_images'],
                 ['image_embeddings'], {'batched_images': image_axes, 'image_embeddings': {0: 'batch'}}, opset)
    example = (embeddings, torch.rand(1, 2, 3, 2) * size, torch.ones(1, 2, 3), torch.tensor([size, size]))
    inputs = ['image_embeddings', 'batched_point_coords', 'batched_point_labels', 'orig_im_size']
    prompt_axes = {'image_embeddings': {0: 'batch'}, 'batched_point_coords': PROMPT_AXES,
                   'batched_point_labels': PROMPT_AXES}
    mask_axes = {0: 'batch', 1: 'num_queries'}
    export_graph(EfficientSamPromptGraph(model, heads=False), example, path['decoder'], inputs,
                 OFFICIAL_DECODER_OUTPUTS,
                 {**prompt_axes, 'output_masks': {**mask_axes, 3: 'height', 4: 'width'},
                  'iou_predictions': mask_axes, 'low_res_masks': {0: 'batch_queries'}}, opset)
    export_graph(EfficientSamPromptGraph(model, heads=True), example, path['decoder_heads'], inputs, HEADS_OUTPUTS,
                 {**prompt_axes, **{name: mask_axes for name in HEADS_OUTPUTS}}, opset)


def _sam_tool_config(name: str, graphs: Mapping[str, str], random_weights: bool) -> str:
    """AnyLabeling / X-AnyLabeling's model YAML (``type: segment_anything``; paths relative to it)."""
    display = f'EfficientSAM ({name})' + (' RANDOM WEIGHTS' if random_weights else '')
    # X-AnyLabeling refuses a name that is not one path segment of letters, digits, '.', '_', '-'.
    fields = {'type': 'segment_anything', 'name': re.sub(r'[^A-Za-z0-9._-]', '_', f'efficientsam-{name}'),
              'display_name': display,
              'encoder_model_path': graphs['encoder'], 'decoder_model_path': graphs['decoder'],
              'input_size': SAM_TARGET_LENGTH, 'max_width': SAM_CANVAS[1], 'max_height': SAM_CANVAS[0]}
    # JSON scalars are YAML scalars: no YAML writer needed.
    return ''.join(f'{key}: {json.dumps(value)}\n' for key, value in fields.items())


def export_onnx(model: nn.Module, out_dir: str, contract: Optional[str] = None, opset: int = 17,
                quantize: Optional[str] = None, config: Optional[Mapping[str, Any]] = None,
                name: str = 'model', random_weights: bool = False) -> Dict[str, Any]:
    """Writes the graphs of ``contract`` (see the module docstring; None: the model's default,
    ``'efficientsam'`` or ``'squeezesam'``), with ``quantize='int8'`` also the heavy graph's
    ``*.int8.onnx`` (dynamic int8; the decoders stay float: int8 weights there cost far more
    agreement than they save time), and ``export.json`` to ``out_dir``, replacing a previous export
    there only once everything is written. ``config`` (the resolved architecture) and ``name`` are
    recorded; ``random_weights`` is recorded and shown in the tools' model name. Returns the
    manifest; ``model`` itself is left as it was."""
    if isinstance(model, EfficientSam):
        family = 'efficientsam'
    elif isinstance(model, SqueezeSam):
        family = 'squeezesam'
        if model.previous_mask_channel:
            raise ValueError('SqueezeSAM with previous_mask_channel takes a previous mask the exported '
                             'graph has no input for; export a model without it')
    else:
        raise TypeError(f'cannot export {type(model).__name__}: expected EfficientSam or SqueezeSam')
    contract = check_request(family, contract, opset, quantize)
    out_dir = check_out_dir(out_dir)
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    _clean_leftovers(out_dir)
    model = copy.deepcopy(model).eval().float().cpu()
    if family == 'efficientsam':
        _fixed_position_embedding(model)
    architecture = {'family': family, 'config': dict(config) if config is not None else None,
                    'img_size': model.img_size}
    export_id = uuid.uuid4().hex
    stamp = json.dumps({'export_id': export_id, 'architecture': architecture}, sort_keys=True)
    graphs = dict(CONTRACT_GRAPHS[contract])
    staged = os.path.join(os.path.dirname(out_dir), f'.{os.path.basename(out_dir)}.{os.getpid()}.tmp')
    shutil.rmtree(staged, ignore_errors=True)
    os.makedirs(staged)
    try:
        _write_graphs(model, contract, staged, opset)
        int8 = {}
        if quantize:
            int8 = dict(graphs)
            for role in INT8_GRAPHS[contract]:
                int8[role] = graphs[role][:-len('.onnx')] + INT8_SUFFIX
                quantize_int8(os.path.join(staged, graphs[role]), os.path.join(staged, int8[role]))
        files = sorted(set(graphs.values()) | set(int8.values()))
        for file in files:
            _stamp(os.path.join(staged, file), stamp)
        manifest = dict(
            format=MANIFEST_FORMAT, contract=contract, model=family, name=name, random_weights=random_weights,
            architecture=architecture, opset=opset, export_id=export_id,
            max_points_per_query=model.decoder_max_num_input_points if family == 'efficientsam' else None,
            negative_points=(model.prompt_encoder.supports_negative_points if family == 'efficientsam'
                             else model.negative_click_channel),
            graphs=graphs, int8_graphs=int8,
            sha256={file: sha256_file(os.path.join(staged, file)) for file in files})
        if contract == 'opencv':
            manifest['input_size'] = model.img_size
        if contract == 'sam':
            manifest['tool_config'] = SAM_TOOL_CONFIG
            with open(os.path.join(staged, SAM_TOOL_CONFIG), 'w', encoding='utf-8') as stream:
                stream.write(_sam_tool_config(name, graphs, random_weights))
        with open(os.path.join(staged, MANIFEST_FILE), 'w', encoding='utf-8') as stream:
            json.dump(manifest, stream, indent=1)
        _swap_into_place(staged, out_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return manifest


def _malformed(path: str, problem: str) -> ValueError:
    return ValueError(f'{path} is malformed: {problem}; re-export the folder with tools/export_onnx.py')


def read_manifest(directory: str) -> Dict[str, Any]:
    """The validated ``export.json`` of an export folder; one clear error naming the file where
    it is missing, not JSON, or not a manifest this version wrote."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{directory} is not an ONNX export folder: no {MANIFEST_FILE} '
                                f'(write one with tools/export_onnx.py)')
    with open(path, encoding='utf-8') as stream:
        try:
            manifest = json.load(stream)
        except ValueError as err:
            raise ValueError(f'{path} is not valid JSON: {err}') from err
    if not isinstance(manifest, dict):
        raise _malformed(path, f'expected a JSON object, got {type(manifest).__name__}')
    if manifest.get('format') != MANIFEST_FORMAT:
        raise _malformed(path, f'format {manifest.get("format")!r} is not {MANIFEST_FORMAT} (an older or '
                               'foreign export)')
    contract = manifest.get('contract')
    if contract not in CONTRACT_GRAPHS:
        raise _malformed(path, f'"contract" must be one of {", ".join(CONTRACT_GRAPHS)}, got {contract!r}')
    family = manifest.get('model')
    if family not in FAMILY_CONTRACTS or contract not in FAMILY_CONTRACTS[family]:
        raise _malformed(path, f'"model" {family!r} does not export to contract {contract!r}')
    expected_roles = set(CONTRACT_GRAPHS[contract])
    for key in ('graphs', 'int8_graphs'):
        graphs = manifest.get(key)
        if not isinstance(graphs, dict) or not all(isinstance(v, str) and v for v in graphs.values()):
            raise _malformed(path, f'"{key}" must map graph roles to file names, got {graphs!r}')
        if (graphs or key == 'graphs') and set(graphs) != expected_roles:
            raise _malformed(path, f'"{key}" must name the graphs {sorted(expected_roles)}, got {sorted(graphs)}')
        if any(os.path.basename(file) != file for file in graphs.values()):
            raise _malformed(path, f'"{key}" must hold plain file names inside the folder, got {graphs!r}')
    hashes = manifest.get('sha256')
    files = set(manifest['graphs'].values()) | set(manifest['int8_graphs'].values())
    if not isinstance(hashes, dict) or not files <= set(hashes) or not all(isinstance(h, str) for h in hashes.values()):
        raise _malformed(path, f'"sha256" must hold the hash of every graph ({", ".join(sorted(files))})')
    architecture = manifest.get('architecture')
    if not isinstance(architecture, dict) or architecture.get('family') != family:
        raise _malformed(path, f'"architecture" must be an object with "family": {family!r}')
    if not isinstance(manifest.get('export_id'), str):
        raise _malformed(path, '"export_id" must be a string')
    points = manifest.get('max_points_per_query')
    if not (points is None or (isinstance(points, int) and points > 0)) or not isinstance(
            manifest.get('negative_points'), bool):
        raise _malformed(path, '"max_points_per_query" must be a positive integer or null and "negative_points" '
                               'a boolean')
    return manifest


def check_export(directory: str, int8: bool = False) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The manifest and ``{role: path}`` of the (int8) graphs of an export folder, after checking
    that every graph is there, has the sha256 ``export.json`` records, and carries this export's id
    and architecture: a graph copied in from another export, or changed since, is refused by name."""
    manifest = read_manifest(directory)
    graphs = manifest['int8_graphs'] if int8 else manifest['graphs']
    if not graphs:
        raise ValueError(f'{directory} has no int8 graphs: export with --quantize int8')
    paths = {role: os.path.join(directory, file) for role, file in graphs.items()}
    missing = sorted(path for path in paths.values() if not os.path.isfile(path))
    if missing:
        raise FileNotFoundError(f'ONNX export {directory} is incomplete: missing {", ".join(missing)}')
    expected = {'export_id': manifest['export_id'], 'architecture': manifest['architecture']}
    for file, path in ((os.path.basename(p), p) for p in paths.values()):
        if sha256_file(path) != manifest['sha256'][file]:
            stamp = _read_stamp(path)
            origin = ('it comes from another export' if stamp is not None and stamp.get('export_id') !=
                      manifest['export_id'] else 'it was changed after the export')
            mismatch = '' if stamp is None or stamp.get('architecture') == manifest['architecture'] else (
                f' (its architecture {stamp.get("architecture")} is not the folder\'s {manifest["architecture"]})')
            raise ValueError(f'{path} does not match {os.path.join(directory, MANIFEST_FILE)}: its sha256 differs, '
                             f'{origin}{mismatch}; re-export the folder')
        if _read_stamp(path) != expected:
            raise ValueError(f'{path} does not carry the export id and architecture recorded in '
                             f'{os.path.join(directory, MANIFEST_FILE)}; re-export the folder')
    return manifest, paths


def _read_stamp(path: str) -> Optional[Dict[str, Any]]:
    """The export stamp in a graph's metadata (:func:`_stamp`), or None."""
    import onnx
    graph_model = onnx.load(path, load_external_data=False)
    for entry in graph_model.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                return json.loads(entry.value)
            except ValueError:
                return None
    return None
