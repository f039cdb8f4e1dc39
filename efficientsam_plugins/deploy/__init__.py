"""Deployment: ONNX graphs of EfficientSAM and SqueezeSAM and an onnxruntime predictor for them.

Needs the ``[export]`` extra (onnx, onnxruntime); importing this package does not, so the core
stays torch-only and the error names the extra only when a graph is exported or run.
"""
from .onnx_export import export_efficient_sam, export_squeeze_sam, read_manifest
from .onnx_predictor import OnnxEfficientSamPredictor, OnnxSqueezeSamPredictor, load_onnx_predictor

__all__ = ['export_efficient_sam', 'export_squeeze_sam', 'read_manifest', 'OnnxEfficientSamPredictor',
           'OnnxSqueezeSamPredictor', 'load_onnx_predictor']
