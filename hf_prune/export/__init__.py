"""Portable exports of pruned models: ONNX with a KV cache (ONNX Runtime), and GGUF for llama.cpp."""

from .gguf import GGUFExport, export_gguf, llama_cpp_greedy
from .onnx import OnnxGenerator, export_onnx, load_onnx

__all__ = ["GGUFExport", "OnnxGenerator", "export_gguf", "export_onnx", "llama_cpp_greedy", "load_onnx"]
