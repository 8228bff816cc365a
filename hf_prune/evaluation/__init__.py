"""Evaluation: perplexity on fixed windows, inference speed and memory, and size figures."""

from ..provenance.size import count_parameters, kv_cache_bytes_per_token
from .compare import compare_models
from .machine import describe_machine, machine_summary
from .perplexity import evaluation_windows, perplexity, window_nll, windows_perplexity
from .speed import measure_speed, peak_memory

__all__ = [
    "compare_models",
    "count_parameters",
    "describe_machine",
    "evaluation_windows",
    "kv_cache_bytes_per_token",
    "machine_summary",
    "measure_speed",
    "peak_memory",
    "perplexity",
    "window_nll",
    "windows_perplexity",
]
