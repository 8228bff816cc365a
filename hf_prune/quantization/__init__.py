"""Weight quantization after pruning (optimum-quanto), saved so that it reloads."""

from .quanto import (
    QUANTIZATION_MAP_NAME,
    WEIGHT_TYPES,
    is_quantized,
    is_quantized_checkpoint,
    load_quantized,
    quantize_weights,
    require_quanto,
    save_quantized,
)

__all__ = [
    "QUANTIZATION_MAP_NAME",
    "WEIGHT_TYPES",
    "is_quantized",
    "is_quantized_checkpoint",
    "load_quantized",
    "quantize_weights",
    "require_quanto",
    "save_quantized",
]
