# Copyright 2026 The hf-prune authors. Licensed under the Apache License, Version 2.0.
#
# This file is copied into every checkpoint saved in the pruned format, next to `modeling_pruned.py`, so that
# `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)` works without hf_prune installed. It must
# therefore stay self-contained: it imports only torch, transformers and `huggingface_hub` (which transformers itself
# depends on, for the `@strict` dataclass validation every transformers config uses).
"""Configuration of a structurally pruned Llama-family decoder (Llama, Mistral, Qwen2, Qwen3, Gemma 3)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters


# Layer types the pruned decoder understands. "mlp" marks a layer whose attention was removed: transformers' caches
# map it to a dummy cache layer that stores nothing.
PRUNED_LAYER_TYPES = ("full_attention", "sliding_attention", "mlp")
# Sub-modules a layer may drop, through transformers' per-layer `skip` list.
SKIPPABLE_MODULES = ("self_attn", "mlp")


class PrunedConfigError(ValueError):
    """A pruned configuration is internally inconsistent (the message names the layer)."""


@strict
class PrunedConfig(PreTrainedConfig):
    r"""
    Configuration of a decoder whose layers may each have their own width, built on transformers' `per_layer_config`.

    The global fields describe the source model. `per_layer_config` overrides them layer by layer with the sizes that
    survived pruning: `num_attention_heads`, `num_key_value_heads`, `head_dim`, `intermediate_size`, optionally
    `rotary_pairs` and `softmax_scale`, and `skip` (a list that may contain `"self_attn"` and/or `"mlp"`) for a layer
    that lost its attention or its MLP entirely. Checkpoints are written with explicit integers for every layer.

    Args:
        source_model_type (`str`, defaults to `"llama"`):
            The architecture family the model was pruned from (`llama`, `mistral`, `qwen2`, `qwen3` or
            `gemma3_text`).
        attention_bias (`bool`, defaults to `False`):
            Whether the query, key and value projections have a bias (Qwen2 does, Llama usually does not).
        attention_output_bias (`bool`, defaults to `False`):
            Whether the attention output projection has a bias.
        mlp_bias (`bool`, defaults to `False`):
            Whether the MLP projections have biases.
        qk_norm (`bool`, defaults to `False`):
            Whether queries and keys are RMS-normalised per head before RoPE (Qwen3).
        rope_head_dim (`int`, *optional*):
            The head dimension the rotary frequencies are defined on: the source model's `head_dim`. A layer whose
            heads were narrowed keeps the original frequencies of the rotary pairs listed in its `rotary_pairs`.
        rotary_pairs (`list[int]`, *optional*):
            Per-layer: indices (into the `rope_head_dim // 2` rotary frequency pairs) of the pairs a layer kept.
            `None` means all of them.
        softmax_scale (`float`, *optional*):
            Per-layer: the attention softmax scale; `None` means `head_dim ** -0.5`.
        layer_types (`list[str]`, *optional*):
            `"full_attention"`, `"sliding_attention"` or `"mlp"` (no attention) for every layer.
        local_rope_parameters (`dict`, *optional*):
            The RoPE of sliding-window layers where it differs from `rope_parameters` (Gemma 3's local base
            frequency); `None` means every attention layer uses `rope_parameters`.
        norm_unit_offset (`bool`, defaults to `False`):
            Whether RMS norms scale by `1 + weight`, computed in float32 (Gemma) rather than by `weight`.
        sandwich_norms (`bool`, defaults to `False`):
            Whether each block is normalised on its way out too (Gemma 3's four norms per layer: `input_layernorm`
            and `post_attention_layernorm` around attention, `pre_feedforward_layernorm` and
            `post_feedforward_layernorm` around the MLP). Without it `post_attention_layernorm` is the MLP's input norm.
        embedding_multiplier (`float`, *optional*):
            A factor the token embeddings are multiplied by, in their dtype (Gemma: `sqrt(hidden_size)`).

    Example:

    ```python
    >>> from hf_prune import PrunedConfig, PrunedForCausalLM
    >>> config = PrunedConfig(
    ...     vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...     num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    ...     per_layer_config={1: {"num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 32}},
    ... )
    >>> model = PrunedForCausalLM(config)
    >>> model.model.layers[1].self_attn.num_heads
    2

    ```
    """

    model_type = "hf_pruned"
    keys_to_ignore_at_inference = ["past_key_values"]
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = False
    rope_parameters: RopeParameters | dict | None = None
    attention_bias: bool = False
    attention_output_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    attention_dropout: int | float | None = 0.0
    sliding_window: int | None = None
    layer_types: list[str] | None = None
    rope_head_dim: int | None = None
    rotary_pairs: list[int] | None = None
    softmax_scale: float | None = None
    local_rope_parameters: dict | None = None
    norm_unit_offset: bool = False
    sandwich_norms: bool = False
    embedding_multiplier: float | None = None
    source_model_type: str = "llama"

    def __post_init__(self, **kwargs):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.rope_head_dim is None:
            self.rope_head_dim = self.head_dim
        if self.layer_types is None:
            default_type = "sliding_attention" if self.sliding_window is not None else "full_attention"
            self.layer_types = [default_type] * self.num_hidden_layers
        # Every checkpoint carries both files, so a user without hf_prune can load it with trust_remote_code=True.
        if kwargs.get("auto_map") is None:
            kwargs["auto_map"] = {
                "AutoConfig": "configuration_pruned.PrunedConfig",
                "AutoModel": "modeling_pruned.PrunedModel",
                "AutoModelForCausalLM": "modeling_pruned.PrunedForCausalLM",
            }
        super().__post_init__(**kwargs)
        # Write every layer's sizes explicitly: the file then documents the pruned shape by itself.
        self.serialize_explicit_per_layer_config = True

    def validate_layer_type(self):
        """Layer types must be known, one per layer, and "mlp" exactly where attention is skipped."""
        if self.layer_types is None:
            return
        if len(self.layer_types) != self.num_hidden_layers:
            raise PrunedConfigError(
                f"`layer_types` has {len(self.layer_types)} entries but num_hidden_layers is {self.num_hidden_layers}"
            )
        for index, layer_type in enumerate(self.layer_types):
            if layer_type not in PRUNED_LAYER_TYPES:
                raise PrunedConfigError(f"layer {index}: unknown layer type {layer_type!r} (expected one of {PRUNED_LAYER_TYPES})")

    def validate_architecture(self):
        """Every layer's attention must split into whole key/value groups and match RoPE; names the faulty layer."""
        for index, layer in enumerate(self.per_layer_config):
            skip = list(getattr(layer, "skip", None) or [])
            unknown = sorted(set(skip) - set(SKIPPABLE_MODULES))
            if unknown:
                raise PrunedConfigError(f"layer {index}: cannot skip {unknown}; only {list(SKIPPABLE_MODULES)} can be skipped")
            has_attention = "self_attn" not in skip
            if has_attention != (self.layer_types[index] != "mlp"):
                raise PrunedConfigError(
                    f"layer {index}: layer type {self.layer_types[index]!r} disagrees with skip={skip} "
                    "(a layer without attention must have layer type 'mlp')"
                )
            if "mlp" not in skip and layer.intermediate_size <= 0:
                raise PrunedConfigError(f"layer {index}: intermediate_size must be positive, got {layer.intermediate_size}")
            if not has_attention:
                continue
            heads, kv_heads, head_dim = layer.num_attention_heads, layer.num_key_value_heads, layer.head_dim
            if heads <= 0 or kv_heads <= 0:
                raise PrunedConfigError(
                    f"layer {index}: needs at least one query and one key/value head, got {heads} and {kv_heads} "
                    "(skip its 'self_attn' instead)"
                )
            if heads % kv_heads != 0:
                raise PrunedConfigError(
                    f"layer {index}: num_attention_heads ({heads}) is not divisible by num_key_value_heads ({kv_heads})"
                )
            if head_dim <= 0 or head_dim % 2 != 0:
                raise PrunedConfigError(f"layer {index}: head_dim must be a positive even number for RoPE, got {head_dim}")
            pairs = layer.rotary_pairs
            if pairs is None:
                if head_dim != self.rope_head_dim:
                    raise PrunedConfigError(
                        f"layer {index}: head_dim {head_dim} differs from rope_head_dim {self.rope_head_dim} "
                        "but the layer lists no rotary_pairs"
                    )
            elif len(pairs) != head_dim // 2 or len(set(pairs)) != len(pairs) or not all(
                0 <= pair < self.rope_head_dim // 2 for pair in pairs
            ):
                raise PrunedConfigError(
                    f"layer {index}: rotary_pairs must be {head_dim // 2} distinct indices below {self.rope_head_dim // 2}"
                )


__all__ = ["PrunedConfig", "PrunedConfigError"]
