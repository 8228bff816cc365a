"""Checking a checkpoint on disk against its config before loading it, with an error naming layer and tensor."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from ..architecture.modeling_pruned import checkpoint_mismatch_message
from ..errors import CheckpointError


def read_safetensors_shapes(directory: str | Path) -> dict[str, list[int]]:
    """Tensor shapes of every `*.safetensors` file in `directory`, read from the headers only (no weights loaded).

    Example:

    ```python
    >>> from hf_prune.checkpoint import read_safetensors_shapes
    >>> import tempfile
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> directory = tempfile.mkdtemp()
    >>> LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                              num_attention_heads=4)).save_pretrained(directory)
    >>> read_safetensors_shapes(directory)["model.norm.weight"]
    [32]

    ```
    """
    shapes: dict[str, list[int]] = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        with path.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_size))
        shapes.update({name: info["shape"] for name, info in header.items() if name != "__metadata__"})
    return shapes


def load_config(directory: str | Path, **kwargs) -> PretrainedConfig:
    """`AutoConfig.from_pretrained`, with an invalid config turned into a one-line `CheckpointError`."""
    try:
        return AutoConfig.from_pretrained(directory, **kwargs)
    except (ValueError, StrictDataclassError) as error:
        cause = error.__cause__ or error
        raise CheckpointError(f"{Path(directory) / 'config.json'}: {cause}") from error


def check_checkpoint(directory: str | Path) -> PretrainedConfig:
    """Verify that the safetensors weights in `directory` have exactly the shapes its config implies.

    Returns the config. Raises `CheckpointError` naming the first offending layer and tensor. Checkpoints without
    safetensors files are not checked here (transformers still refuses mismatches when loading them).

    Example:

    ```python
    >>> from hf_prune.checkpoint import check_checkpoint
    >>> import tempfile
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> directory = tempfile.mkdtemp()
    >>> LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                              num_attention_heads=4)).save_pretrained(directory)
    >>> check_checkpoint(directory).num_hidden_layers
    2

    ```
    """
    config = load_config(directory)
    actual = read_safetensors_shapes(directory)
    if not actual:
        return config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    message = checkpoint_mismatch_message(
        [(name, actual[name], shape) for name, shape in expected.items() if name in actual and actual[name] != shape],
        [name for name in expected if name not in actual and name not in tied],
        [name for name in actual if name not in expected],
    )
    if message:
        raise CheckpointError(f"{directory}: {message}")
    return config
