"""Deployment: ONNX graphs of EfficientSAM and SqueezeSAM and an onnxruntime predictor for them.

Needs the ``[export]`` extra (onnx, onnxruntime); importing this package does not, so the core
stays torch-only and the error names the extra only when a graph is exported or run.
"""
from .onnx_export import check_export, export_onnx, read_manifest
from .onnx_predictor import OnnxEfficientSamPredictor, OnnxSqueezeSamPredictor, load_onnx_predictor

__all__ = ['check_export', 'export_onnx', 'read_manifest', 'OnnxEfficientSamPredictor',
           'OnnxSqueezeSamPredictor', 'load_onnx_predictor']
