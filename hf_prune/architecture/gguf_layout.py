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

Gemma 3 is written as llama.cpp's `gemma3`, whose graph fixes more than the checkpoint does: every sixth layer
(5, 11, ...) attends globally and the rest within the sliding window, local layers rotate at base 10,000, and one head
count, head size and MLP width hold for all layers. A Gemma 3 that still fits (the dense model, uniform width pruning,
depth pruning that removes whole groups of six layers) is written exactly, norms stored as 1 + weight as llama.cpp's
own converter does; any other is refused in one line naming what llama.cpp cannot express.

This module only reads configs, so a checkpoint's record can say whether it exports before any file is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PretrainedConfig

from ..errors import FormatError

# Width of the zero MLP written for a layer without one (a multiple of every quantization block size used).
ZERO_MLP_WIDTH = 32
STOCK_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# llama.cpp's gemma3 (llama-cpp-python 0.3.36, `src/llama-model.cpp`): layer i is global iff i % 6 == 5, local layers
# rotate at base 10,000, and the softmax scale is 1/sqrt(head_dim) (below 62 layers).
GEMMA3_GLOBAL_PERIOD = 6
GEMMA3_LOCAL_ROPE_THETA = 10000.0


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
        architecture: `llama`, `qwen2`, `qwen3`, `gemma3` or `deci`.
        head_dim: the one head size of every attention layer.
        layers: every layer's head counts and MLP width, workarounds included.
        notes: what the file does differently from the checkpoint, one sentence each (empty when it is exact).
        sliding_window: the window llama.cpp's local layers attend within (`gemma3` only).
        norm_unit_offset: norms scale by 1 + weight in the checkpoint; the file stores 1 + weight (`gemma3`).
        rope_parameters: the RoPE of global layers where the config keeps one per layer type (`gemma3`).
    """

    architecture: str
    head_dim: int
    layers: list[GGUFLayer]
    notes: list[str] = field(default_factory=list)
    sliding_window: int | None = None
    norm_unit_offset: bool = False
    rope_parameters: dict | None = None


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
        return _gemma3_layout(config)
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


def _gemma3_layout(config: PretrainedConfig) -> GGUFLayout:
    """llama.cpp's `gemma3`, when the model still has the shape that graph assumes (see the module docstring)."""
    from .families import pruned_config_from

    pruned = pruned_config_from(config)
    first = pruned.per_layer_config[0]
    for index, layer in enumerate(pruned.per_layer_config):
        if getattr(layer, "skip", None) or layer.rotary_pairs is not None:
            raise FormatError(
                f"GGUF cannot express layer {index} of this Gemma 3 (a block removed or heads narrowed): "
                "llama.cpp's gemma3 gives every layer attention and an MLP at full head size"
            )
        widths = (layer.num_attention_heads, layer.num_key_value_heads, layer.intermediate_size)
        if widths != (first.num_attention_heads, first.num_key_value_heads, first.intermediate_size):
            raise FormatError(
                f"GGUF cannot express this Gemma 3: layer {index} has {widths[0]} heads, {widths[1]} KV heads and "
                f"{widths[2]} MLP neurons where layer 0 has {first.num_attention_heads}, {first.num_key_value_heads} "
                f"and {first.intermediate_size}, and llama.cpp's gemma3 has one width for all layers"
            )
    if first.softmax_scale != first.head_dim**-0.5:
        raise FormatError(
            f"GGUF cannot express this Gemma 3's softmax scale {first.softmax_scale:.6g}: llama.cpp's gemma3 uses "
            f"1/sqrt(head_dim) = {first.head_dim**-0.5:.6g}"
        )
    global_layers = [index for index, kind in enumerate(pruned.layer_types) if kind == "full_attention"]
    expected = [index for index in range(pruned.num_hidden_layers) if index % GEMMA3_GLOBAL_PERIOD == GEMMA3_GLOBAL_PERIOD - 1]
    if global_layers != expected:
        raise FormatError(
            f"GGUF cannot express this Gemma 3's layer types: its global layers are {global_layers or 'none'}, and "
            f"llama.cpp's gemma3 makes every sixth layer global ({expected}); depth pruning keeps that only when it "
            "removes whole groups of six layers"
        )
    local, rope = dict(pruned.local_rope_parameters or {}), dict(pruned.rope_parameters or {})
    if local.get("rope_type", "default") != "default" or local.get("rope_theta") != GEMMA3_LOCAL_ROPE_THETA:
        raise FormatError(
            f"GGUF cannot express local RoPE {local}: llama.cpp's gemma3 rotates local layers at base 10000 unscaled"
        )
    if rope.get("rope_type", "default") not in ("default", "linear"):
        raise FormatError(f"GGUF export cannot express Gemma 3's RoPE scaling {rope.get('rope_type')!r}")
    layer = GGUFLayer(first.num_attention_heads, first.num_key_value_heads, first.intermediate_size)
    return GGUFLayout(
        "gemma3",
        first.head_dim,
        [layer] * pruned.num_hidden_layers,
        sliding_window=pruned.sliding_window,
        norm_unit_offset=True,
        rope_parameters=rope,
    )


def _head_dim(config: PretrainedConfig) -> int:
    # Read once the layers are known to share it: a pruned config refuses the global value while they may differ.
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


__all__ = ["GEMMA3_GLOBAL_PERIOD", "STOCK_ARCHITECTURES", "ZERO_MLP_WIDTH", "GGUFLayer", "GGUFLayout", "gguf_layout"]
