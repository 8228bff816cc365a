"""Checkpoints: resolving and loading models, checking them against their config, saving pruned ones atomically."""

from ..provenance import RECORD_NAME, PruningRecord
from .layer_source import LayerSource, ModelLayers, StreamedLayers, as_layer_source, load_streamed
from .load import (
    BUILTIN_MODELS,
    LoadedModel,
    builtin_checkpoint,
    cache_dir,
    download_checkpoint,
    load_model,
    load_tokenizer,
    resolve_model,
)
from .save import FORMATS, atomic_directory, check_output_dir, resolve_format, save_pruned
from .tensors import CheckpointTensors
from .validate import check_checkpoint, load_config, read_safetensors_shapes

__all__ = [
    "BUILTIN_MODELS",
    "CheckpointTensors",
    "LayerSource",
    "ModelLayers",
    "StreamedLayers",
    "as_layer_source",
    "load_streamed",
    "FORMATS",
    "RECORD_NAME",
    "LoadedModel",
    "PruningRecord",
    "atomic_directory",
    "builtin_checkpoint",
    "cache_dir",
    "check_checkpoint",
    "check_output_dir",
    "download_checkpoint",
    "load_config",
    "load_model",
    "load_tokenizer",
    "read_safetensors_shapes",
    "resolve_format",
    "resolve_model",
    "save_pruned",
]
