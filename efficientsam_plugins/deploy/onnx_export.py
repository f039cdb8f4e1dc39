"""ONNX graphs of EfficientSAM (an encoder and a decoder) and SqueezeSAM (one graph).

The graphs keep the official export's contract (input names ``batched_images``,
``batched_point_coords``, ``batched_point_labels``, ``orig_im_size``; resizing, normalisation and
coordinate rescaling inside) but every prompt axis is dynamic: batch, queries and points, so many
boxes or a whole everything-grid go through one decoder call. All outputs are named.

Exported with the TorchScript exporter (``dynamo=False``): the dynamo exporter specialises the
query axis at 1 (the image tokens are shared by the queries and broadcast), cannot express the
output size read from ``orig_im_size``, and fails to convert its opset-18 graphs down to 17.
"""
import copy
import json
import os
import tempfile
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fileio import atomic_write, atomic_write_json
from ..modeling.efficient_sam import EfficientSam

MANIFEST_FILE = 'export.json'
EFFICIENTSAM_GRAPHS = {'encoder': 'encoder.onnx', 'decoder': 'decoder.onnx'}
SQUEEZESAM_GRAPHS = {'model': 'squeeze_sam.onnx'}
INT8_SUFFIX = '.int8.onnx'
SUPPORTED_OPSETS = range(17, 21)  # LayerNormalization needs 17; 20 is the TorchScript exporter's newest
PROMPT_AXES = {0: 'batch', 1: 'num_queries', 2: 'num_points'}
DECODER_OUTPUTS = ('output_masks', 'iou_predictions', 'low_res_logits',
                   'single_mask_low_res_logits', 'single_mask_iou_predictions')


def require_export_extra():
    """onnxruntime (after checking that onnx imports too), or an ImportError naming the extra."""
    try:
        import onnx  # noqa: F401  (the exporter's checker, the predictor's graph surgery)
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export and inference need onnx and onnxruntime ({err.name} is missing): "
                          f"pip install 'efficientsam_plugins[export]'") from err
    return onnxruntime


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


class EfficientSamDecoderGraph(nn.Module):
    """Embeddings ``[B, C, h, w]``, (x, y) pixels ``[B, Q, N, 2]``, labels ``[B, Q, N]`` and the
    original ``(H, W)`` (int64 ``[2]``) to the outputs named in :data:`DECODER_OUTPUTS`.

    Computes the multi-mask and the single-mask heads from one transformer pass (the predictor's
    ``multimask_output`` picks an output, not a graph); :meth:`EfficientSam.encode_prompts` pads
    and cuts the prompts to the model's fixed point count for every N in one graph."""

    def __init__(self, model: EfficientSam) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, batched_point_coords: torch.Tensor,
                batched_point_labels: torch.Tensor, orig_im_size: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model, decoder = self.model, self.model.mask_decoder
        scale = model.img_size / orig_im_size.flip(0).to(batched_point_coords.dtype)  # (x, y) factors
        points = torch.where(batched_point_coords >= 0, batched_point_coords * scale, -1.0)
        sparse = model.encode_prompts(points, batched_point_labels)
        masks, iou = decoder.predict_all_masks(image_embeddings, model.prompt_encoder.get_dense_pe(), sparse)
        masks, iou = masks.unflatten(0, sparse.shape[:2]), iou.unflatten(0, sparse.shape[:2])
        multi = slice(1, None) if decoder.num_multimask_outputs > 1 else slice(0, 1)
        full = F.interpolate(masks[:, :, multi].flatten(0, 1), (orig_im_size[0], orig_im_size[1]), mode='bicubic')
        return (full.unflatten(0, sparse.shape[:2]), iou[:, :, multi], masks[:, :, multi],
                masks[:, :, :1], iou[:, :, :1])


def export_graph(module: nn.Module, example: Tuple[torch.Tensor, ...], path: str, input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_axes: Dict[str, Dict[int, str]], opset: int) -> None:
    """``module`` traced on ``example`` to an ONNX file at ``path`` (complete, or absent on error)."""
    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer warns at every shape read and constant folding at every strided slice; the
            # tests check the dynamic axes and the outputs instead.
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            warnings.filterwarnings('ignore', 'Constant folding', UserWarning)
            # dynamo=False is chosen (module docstring); torch's notices about that choice are noise here.
            warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'torch\.onnx')
            warnings.filterwarnings('ignore', 'You are using the legacy TorchScript', DeprecationWarning)
            torch.onnx.export(module.eval(), example, tmp, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    atomic_write(path, write)


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
        atomic_write(target, lambda tmp: quantize_dynamic(prepared, tmp, op_types_to_quantize=['MatMul', 'Gemm'],
                                                          weight_type=QuantType.QInt8))


def _check_export_request(out_dir: str, opset: int, quantize: Optional[str]) -> str:
    """Refuses, before any tracing, what the export could not do; returns the (created) folder."""
    require_export_extra()
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f'opset {opset} is not supported; use {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}')
    if quantize not in (None, 'int8'):
        raise ValueError(f'unknown quantization {quantize!r}; only int8 is supported')
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f'output folder {out_dir} is a file, not a folder')
    os.makedirs(out_dir, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise PermissionError(f'output folder {out_dir} is not writable')
    return out_dir


def _quantized(graphs: Dict[str, str], out_dir: str, quantize: Optional[str],
               heavy: Sequence[str]) -> Dict[str, str]:
    """The int8 file names of the ``heavy`` graphs (written now), the others unchanged."""
    if quantize is None:
        return {}
    int8 = dict(graphs)
    for name in heavy:
        int8[name] = graphs[name][:-len('.onnx')] + INT8_SUFFIX
        quantize_int8(os.path.join(out_dir, graphs[name]), os.path.join(out_dir, int8[name]))
    return int8


def export_efficient_sam(model: EfficientSam, out_dir: str, opset: int = 17, quantize: Optional[str] = None,
                         config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Writes ``encoder.onnx``, ``decoder.onnx`` (with ``quantize='int8'`` also ``encoder.int8.onnx``)
    and ``export.json`` (what :func:`~efficientsam_plugins.deploy.load_onnx_predictor` reads) to
    ``out_dir``; returns that manifest. The decoder stays float: int8 weights there cost far more
    agreement than they save time (README, "ONNX export"). ``model`` itself is left as it was."""
    out_dir = _check_export_request(out_dir, opset, quantize)
    model = copy.deepcopy(model).eval().float().cpu()
    size = model.img_size
    example_image = torch.rand(1, 3, size // 2 + 3, size + 5)  # not square: any size resizes in the graph
    with torch.no_grad():
        embeddings = model.get_image_embeddings(example_image)
    export_graph(EfficientSamEncoderGraph(model), (example_image,),
                 os.path.join(out_dir, EFFICIENTSAM_GRAPHS['encoder']), ['batched_images'], ['image_embeddings'],
                 {'batched_images': {0: 'batch', 2: 'height', 3: 'width'}, 'image_embeddings': {0: 'batch'}}, opset)
    example_prompts = (torch.rand(1, 2, 3, 2) * size, torch.ones(1, 2, 3), torch.tensor([size, size]))
    mask_axes = {0: 'batch', 1: 'num_queries'}
    export_graph(EfficientSamDecoderGraph(model), (embeddings, *example_prompts),
                 os.path.join(out_dir, EFFICIENTSAM_GRAPHS['decoder']),
                 ['image_embeddings', 'batched_point_coords', 'batched_point_labels', 'orig_im_size'],
                 DECODER_OUTPUTS,
                 {'image_embeddings': {0: 'batch'}, 'batched_point_coords': PROMPT_AXES,
                  'batched_point_labels': PROMPT_AXES,
                  'output_masks': {**mask_axes, 3: 'height', 4: 'width'},
                  **{name: mask_axes for name in DECODER_OUTPUTS[1:]}}, opset)
    manifest = dict(model='efficientsam', config=config, opset=opset, img_size=size,
                    max_points_per_query=model.decoder_max_num_input_points,
                    negative_points=model.prompt_encoder.supports_negative_points, graphs=dict(EFFICIENTSAM_GRAPHS))
    manifest['int8_graphs'] = _quantized(EFFICIENTSAM_GRAPHS, out_dir, quantize, ['encoder'])
    atomic_write_json(os.path.join(out_dir, MANIFEST_FILE), manifest, indent=1)
    return manifest


def read_manifest(directory: str) -> Dict[str, Any]:
    """The ``export.json`` of an export folder, with a clear error where it is not one."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{directory} is not an ONNX export folder: no {MANIFEST_FILE} '
                                f'(write one with tools/export_onnx.py)')
    with open(path, encoding='utf-8') as stream:
        try:
            return json.load(stream)
        except ValueError as err:
            raise ValueError(f'{path} is not valid JSON: {err}') from err


class SqueezeSamGraph(nn.Module):
    """SqueezeSAM's one graph: ``batched_images`` ``[B, 3, H, W]`` in [0, 1] and the prompts (fused
    into the network input, so no part runs once per image) to ``output_masks`` ``[B, Q, 3, H, W]``,
    ``iou_predictions`` and ``low_res_logits``; the original size is the image's own."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, batched_images: torch.Tensor, batched_point_coords: torch.Tensor,
                batched_point_labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        input_h, input_w = batched_images.shape[-2:]
        low_res, iou = self.model.predict_masks(self.model.preprocess(batched_images), batched_point_coords,
                                                batched_point_labels, input_h, input_w)
        full = F.interpolate(low_res.flatten(0, 1), (input_h, input_w), mode='bicubic')
        return full.view(*low_res.shape[:3], input_h, input_w), iou, low_res


def export_squeeze_sam(model, out_dir: str, opset: int = 17, quantize: Optional[str] = None,
                       config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Writes ``squeeze_sam.onnx`` (with ``quantize='int8'`` also ``squeeze_sam.int8.onnx``) and
    ``export.json`` to ``out_dir``; returns that manifest."""
    if model.previous_mask_channel:
        raise ValueError('SqueezeSAM with previous_mask_channel takes a previous mask the exported '
                         'graph has no input for; export a model without it')
    out_dir = _check_export_request(out_dir, opset, quantize)
    model = copy.deepcopy(model).eval().float().cpu()
    size = model.img_size
    example = (torch.rand(1, 3, size // 2 + 3, size + 5), torch.rand(1, 2, 3, 2) * (size // 2),
               torch.ones(1, 2, 3))
    mask_axes = {0: 'batch', 1: 'num_queries'}
    export_graph(SqueezeSamGraph(model), example, os.path.join(out_dir, SQUEEZESAM_GRAPHS['model']),
                 ['batched_images', 'batched_point_coords', 'batched_point_labels'],
                 ['output_masks', 'iou_predictions', 'low_res_logits'],
                 {'batched_images': {0: 'batch', 2: 'height', 3: 'width'}, 'batched_point_coords': PROMPT_AXES,
                  'batched_point_labels': PROMPT_AXES, 'output_masks': {**mask_axes, 3: 'height', 4: 'width'},
                  'iou_predictions': mask_axes, 'low_res_logits': mask_axes}, opset)
    manifest = dict(model='squeezesam', config=config, opset=opset, img_size=size, max_points_per_query=None,
                    negative_points=model.negative_click_channel, graphs=dict(SQUEEZESAM_GRAPHS))
    manifest['int8_graphs'] = _quantized(SQUEEZESAM_GRAPHS, out_dir, quantize, ['model'])
    atomic_write_json(os.path.join(out_dir, MANIFEST_FILE), manifest, indent=1)
    return manifest
