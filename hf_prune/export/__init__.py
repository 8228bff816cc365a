"""Portable exports of pruned models: ONNX with a KV cache, run with ONNX Runtime."""

from .onnx import OnnxGenerator, export_onnx, load_onnx

__all__ = ["OnnxGenerator", "export_onnx", "load_onnx"]
