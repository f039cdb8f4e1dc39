"""Exported graphs behind the common predictor interface, run by onnxruntime.

Prompts are validated, chunked and upsampled by :class:`~efficientsam_plugins.predictor.Predictor`
exactly as for the PyTorch models, so the evaluation tools, the demo and the everything generator
take these predictors unchanged. EfficientSAM runs the default export's ``encoder.onnx`` and
``decoder_heads.onnx`` (the official ``decoder.onnx`` beside them is for the clients).
"""
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..modeling.common import select_best
from ..predictor import Predictor
from .onnx_export import check_export, require_export_extra


def _session(model: Any, num_threads: Optional[int], providers: Optional[Sequence[str]]):
    """An inference session of a file path or serialised graph; ``num_threads`` None: onnxruntime's default."""
    ort = require_export_extra()
    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(model, options, providers=list(providers or ['CPUExecutionProvider']))


def _without_outputs(path: str, dropped: Sequence[str]) -> bytes:
    """The graph at ``path`` cut to the nodes its other outputs need: onnxruntime runs every node of
    a graph whatever outputs a call asks for, and the full-resolution masks of every candidate
    cost more than the rest of the decoder (the predictor upsamples only the masks it returns)."""
    require_export_extra()
    import onnx
    from onnx.utils import Extractor
    model = onnx.load(path)
    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output if value.name not in dropped]
    return Extractor(model).extract_model(inputs, outputs).SerializeToString()


class OnnxEfficientSamPredictor(Predictor):
    """EfficientSAM's encoder and prompt-decoder graphs (``encoder.onnx`` and ``decoder_heads.onnx``
    of :func:`~efficientsam_plugins.deploy.onnx_export.export_onnx`'s default contract).

    ``set_image`` runs the encoder once; each chunk of queries is one decoder call with every
    query and point axis dynamic."""

    model_name = 'EfficientSAM (ONNX)'

    def __init__(self, encoder_path: str, decoder_path: str, max_points_per_query: Optional[int] = None,
                 negative_points: bool = False, max_queries_per_batch: int = 64,
                 num_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None) -> None:
        super().__init__(max_queries_per_batch)
        self.max_points_per_query = max_points_per_query
        self.supports_negative_points = negative_points
        self.encoder = _session(encoder_path, num_threads, providers)
        self.decoder = _session(decoder_path, num_threads, providers)
        self.image_embeddings: Optional[np.ndarray] = None

    def reset_image(self) -> None:
        super().reset_image()
        self.image_embeddings = None

    def _set_image(self, image: torch.Tensor) -> None:
        self.image_embeddings = self.encoder.run(['image_embeddings'], {'batched_images': image[None].numpy()})[0]

    def _decode(self, points: torch.Tensor, labels: torch.Tensor, multimask_output: bool):
        names = (['low_res_logits', 'iou_predictions'] if multimask_output else
                 ['single_mask_low_res_logits', 'single_mask_iou_predictions'])
        logits, iou = self.decoder.run(names, {
            'image_embeddings': self.image_embeddings, 'batched_point_coords': points[None].numpy(),
            'batched_point_labels': labels[None].numpy(),
            'orig_im_size': np.asarray(self.original_size, dtype=np.int64)})
        return torch.from_numpy(logits[0]), torch.from_numpy(iou[0])


class OnnxSqueezeSamPredictor(Predictor):
    """SqueezeSAM's one graph (written by :func:`~efficientsam_plugins.deploy.onnx_export.export_onnx`):
    the prompts are fused into the input, so every chunk of queries runs the whole graph on the
    image kept by ``set_image``. ``multimask_output=False`` returns the candidate with the highest
    predicted IoU, as :class:`~efficientsam_plugins.predictor.SqueezeSamPredictor` does."""

    model_name = 'SqueezeSAM (ONNX)'

    def __init__(self, model_path: str, negative_points: bool = False, max_queries_per_batch: int = 8,
                 num_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None) -> None:
        super().__init__(max_queries_per_batch)
        self.supports_negative_points = negative_points
        self.session = _session(_without_outputs(model_path, ['output_masks']), num_threads, providers)
        self.image: Optional[np.ndarray] = None

    def reset_image(self) -> None:
        super().reset_image()
        self.image = None

    def _set_image(self, image: torch.Tensor) -> None:
        self.image = image[None].numpy()

    def _decode(self, points: torch.Tensor, labels: torch.Tensor, multimask_output: bool):
        logits, iou = self.session.run(['low_res_logits', 'iou_predictions'], {
            'batched_images': self.image, 'batched_point_coords': points[None].numpy(),
            'batched_point_labels': labels[None].numpy()})
        logits, iou = torch.from_numpy(logits[0]), torch.from_numpy(iou[0])
        return (logits, iou) if multimask_output else select_best(logits, iou)


def load_onnx_predictor(directory: str, int8: bool = False, **kwargs) -> Predictor:
    """The predictor of an export folder written by ``tools/export_onnx.py`` (its default contract);
    ``int8`` uses its quantized graphs (exported with ``--quantize int8``). The graphs are checked
    against ``export.json`` first (:func:`~efficientsam_plugins.deploy.onnx_export.check_export`).
    ``kwargs`` go to the predictor (``max_queries_per_batch``, ``num_threads``, ``providers``)."""
    manifest, paths = check_export(directory, int8)
    if manifest['contract'] in ('sam', 'opencv'):
        client = (f'AnyLabeling / X-AnyLabeling (load {manifest.get("tool_config")} there)'
                  if manifest['contract'] == 'sam' else "OpenCV's dnn module")
        raise ValueError(f'{directory} holds the {manifest["contract"]!r}-contract graphs for {client}; the '
                         f'onnxruntime predictor runs the default export: tools/export_onnx.py without --contract')
    if manifest['model'] == 'efficientsam':
        return OnnxEfficientSamPredictor(paths['encoder'], paths['decoder_heads'], manifest['max_points_per_query'],
                                         manifest['negative_points'], **kwargs)
    return OnnxSqueezeSamPredictor(paths['model'], manifest['negative_points'], **kwargs)
