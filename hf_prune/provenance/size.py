"""Model size figures that need no forward pass: parameters and KV-cache bytes per token."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel


def count_parameters(model_or_config: PreTrainedModel | PretrainedConfig) -> int:
    """Number of distinct parameters (tied embeddings counted once) of a model, or of the model a config describes.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_prune.evaluation import count_parameters
    >>> count_parameters(LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
    ...                              num_attention_heads=2, tie_word_embeddings=True))
    744

    ```
    """
    model = model_or_config
    if isinstance(model_or_config, PretrainedConfig):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(model_or_config)
    return sum(parameter.numel() for parameter in model.parameters())


def kv_cache_bytes_per_token(config: PretrainedConfig, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of keys and values one token adds to the cache, summed over the layers that have attention.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_prune.evaluation import kv_cache_bytes_per_token
    >>> kv_cache_bytes_per_token(LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
    ...                                      num_key_value_heads=2), torch.float16)
    256

    ```
    """
    element = torch.empty((), dtype=dtype).element_size()
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    total = 0
    for layer, layer_type in zip(config.per_layer_config, layer_types):
        if layer_type == "mlp":
            continue
        head_dim = getattr(layer, "head_dim", None) or layer.hidden_size // layer.num_attention_heads
        total += 2 * layer.num_key_value_heads * head_dim * element
    return total
