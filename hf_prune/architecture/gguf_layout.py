"""How a model is laid out in llama.cpp's GGUF architectures, and what they cannot express.

Stock checkpoints keep their own llama.cpp architecture: Llama and Mistral as `llama`, Qwen2 as `qwen2`, Qwen3 as
`qwen3`. The pruned format becomes `deci`, the architecture llama.cpp runs Nemotron-NAS models with: it reads per-layer
arrays for `head_count`, `head_count_kv` and `feed_forward_length`, where a head count of 0 marks a layer without
attention. Two things its graph (llama-cpp-python 0.3.36, `src/models/deci.cpp`) does not do as the pruned model does,
and how the layout keeps them exact:

- A layer whose `feed_forward_length` is 0 is skipped whole, attention output included (measured: the greedy tokens of
  stories260k without layer 2's MLP change). Every layer without an MLP gets a zero MLP of `ZERO_MLP_WIDTH` neurons
  instead: its down projection is zero, so it adds exactly nothing and the attention output is kept.
- The head dimension is read only when layer 0 has attention. If layer 0 lost its attention, it gets one zero
  query/key/value head whose output projection is zero, which adds exactly nothing.

This module only reads configs, so a checkpoint's record can say whether it exports before any file is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PretrainedConfig

from ..errors import FormatError

# Width of the zero MLP written for a layer without one (a multiple of every quantization block size used).
ZERO_MLP_WIDTH = 32
STOCK_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


@dataclass
class GGUFLayer:
    """One decoder layer as llama.cpp reads it: 0 heads means no attention.

    `zero_attention` and `zero_mlp` mark blocks the checkpoint does not have, written with zero weights (one head,
    `ZERO_MLP_WIDTH` neurons) so that llama.cpp computes exactly what the checkpoint does.
    """

    heads: int
    kv_heads: int
    intermediate_size: int
    zero_attention: bool = False
    zero_mlp: bool = False


@dataclass
class GGUFLayout:
    """A model as llama.cpp will read it.

    Attributes:
        architecture: `llama`, `qwen2`, `qwen3` or `deci`.
        head_dim: the one head size of every attention layer.
        layers: every layer's head counts and MLP width, workarounds included.
        notes: what the file does differently from the checkpoint, one sentence each (empty when it is exact).
    """

    architecture: str
    head_dim: int
    layers: list[GGUFLayer]
    notes: list[str] = field(default_factory=list)


def gguf_layout(config: PretrainedConfig) -> GGUFLayout:
    """How a model with `config` is written to GGUF for llama.cpp, or a one-line `FormatError` saying why it cannot be.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_prune.architecture.gguf_layout import gguf_layout
    >>> gguf_layout(LlamaConfig(num_hidden_layers=2)).architecture
    'llama'

    ```
    """
    model_type = config.model_type
    if "gemma3_text" in (model_type, getattr(config, "source_model_type", None)):
        raise FormatError("GGUF export of Gemma 3 is not supported yet (its norms, embedding scale and local RoPE)")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise FormatError(f"GGUF export supports the SiLU MLP of Llama-family models, not hidden_act={config.hidden_act!r}")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", "default")
    if rope_type not in ("default", "linear", "llama3"):
        raise FormatError(f"GGUF export cannot express RoPE scaling {rope_type!r} (supported: default, linear, llama3)")
    notes = []
    layer_types = getattr(config, "layer_types", None)
    sliding = "sliding_attention" in layer_types if layer_types else model_type == "mistral"
    if sliding and getattr(config, "sliding_window", None) is not None:
        notes.append(
            f"llama.cpp attends to the whole context: identical to the checkpoint up to its sliding window of "
            f"{config.sliding_window} tokens"
        )
    if model_type in STOCK_ARCHITECTURES:
        layer = GGUFLayer(config.num_attention_heads, config.num_key_value_heads, config.intermediate_size)
        return GGUFLayout(STOCK_ARCHITECTURES[model_type], _head_dim(config), [layer] * config.num_hidden_layers, notes)
    if model_type != "hf_pruned":
        raise FormatError(
            f"GGUF export supports {', '.join(sorted(STOCK_ARCHITECTURES))} and hf-prune's pruned format, not {model_type!r}"
        )
    if config.qk_norm:
        raise FormatError(
            "GGUF cannot express this checkpoint: llama.cpp's deci architecture (per-layer widths) has no q/k norms "
            "(Qwen3); only a uniformly pruned Qwen3 saved as stock can be exported"
        )
    layers, scales = [], set()
    for index, layer in enumerate(config.per_layer_config):
        skip = set(getattr(layer, "skip", None) or ())
        if layer.rotary_pairs is not None:
            raise FormatError(
                f"GGUF cannot express layer {index}: its heads were narrowed to {layer.head_dim} of "
                f"{config.rope_head_dim} dimensions (rotary_pairs), and llama.cpp has one head size for all layers"
            )
        has_attention = "self_attn" not in skip
        if has_attention:
            scales.add(layer.softmax_scale)
        heads = layer.num_attention_heads if has_attention else 0
        kv_heads = layer.num_key_value_heads if has_attention else 0
        has_mlp = "mlp" not in skip
        width = layer.intermediate_size if has_mlp else ZERO_MLP_WIDTH
        layers.append(GGUFLayer(heads, kv_heads, width, zero_mlp=not has_mlp))
    if len(scales) > 1:
        raise FormatError("GGUF cannot express per-layer softmax scales; llama.cpp has one scale for all layers")
    if layers[0].heads == 0:
        layers[0] = GGUFLayer(1, 1, layers[0].intermediate_size, zero_attention=True, zero_mlp=layers[0].zero_mlp)
        notes.append("layer 0 has no attention: written with one zero head (llama.cpp reads the head size from layer 0)")
    if any(layer.zero_mlp for layer in layers):
        notes.append(
            f"layers without an MLP are written with a zero MLP of {ZERO_MLP_WIDTH} neurons (llama.cpp's deci graph "
            "would drop their attention output)"
        )
    return GGUFLayout("deci", _head_dim(config), layers, notes)


def _head_dim(config: PretrainedConfig) -> int:
    # Read once the layers are known to share it: a pruned config refuses the global value while they may differ.
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


__all__ = ["STOCK_ARCHITECTURES", "ZERO_MLP_WIDTH", "GGUFLayer", "GGUFLayout", "gguf_layout"]
