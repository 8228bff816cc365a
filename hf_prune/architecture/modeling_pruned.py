# Copyright 2026 The hf-prune authors. Licensed under the Apache License, Version 2.0.
#
# Like `configuration_pruned.py`, this file travels inside every pruned-format checkpoint and must stay
# self-contained (torch and transformers only). It follows transformers' Llama modeling file, with three differences:
# every layer reads its own sizes from `config.per_layer_config[i]`, a layer may lack its attention or its MLP, and a
# layer whose heads were narrowed keeps the original frequencies of the rotary pairs it kept. Gemma 3's differences
# (norms by 1 + weight, four norms per layer, scaled embeddings, a local RoPE for sliding layers) are config switches.
"""A Llama-family decoder (Llama, Mistral, Qwen2, Qwen3, Gemma 3) with a different width in every layer."""

import copy
import inspect
import re
from collections.abc import Callable

import torch
import transformers
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_pruned import PrunedConfig


# The transformers releases this file was tested on. Older ones build `per_layer_config` too late for the config's
# validation; newer ones run it as long as they pass the KV cache under a name this file knows (checked below).
SUPPORTED_TRANSFORMERS = ">=5.15, tested up to 5.25"
MINIMUM_TRANSFORMERS = "5.15.0"  # pyproject.toml's lower bound (tests/test_packaging.py checks)


class UnsupportedTransformersError(RuntimeError):
    """The installed transformers release cannot run this pruned model correctly (the message names the range)."""


def _unsupported(reason: str) -> UnsupportedTransformersError:
    return UnsupportedTransformersError(
        f"transformers {transformers.__version__} {reason}; this pruned model's code supports transformers "
        f"{SUPPORTED_TRANSFORMERS}: pip install 'transformers>={MINIMUM_TRANSFORMERS}'"
    )


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


if _release(transformers.__version__) < _release(MINIMUM_TRANSFORMERS):
    raise _unsupported("is too old")

# The name under which transformers hands a model its KV cache and expects it back in the output: `past_key_values`
# up to 5.24, `cache` from 5.25 (where the old name is deprecated). Read from the installed release's own output class
# and mask functions, so that a checkpoint saved under one release runs under the other.
CACHE_NAME = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
if CACHE_NAME not in inspect.signature(create_causal_mask).parameters:
    raise _unsupported(f"names the KV cache of its mask functions differently from its outputs ({CACHE_NAME!r})")


def resolve_cache(cache: Cache | None, past_key_values: Cache | None, kwargs: dict) -> Cache | None:
    """The KV cache passed under either name; refuses one passed under a name this file does not know.

    A cache that arrives under an unknown name would otherwise be ignored and every decoding step would run without
    the earlier tokens: wrong text, no error. That is what transformers 5.25's rename did to checkpoints saved before.
    """
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the KV cache as `cache` or as `past_key_values`, not both")
    for name, value in kwargs.items():
        if isinstance(value, Cache):
            raise _unsupported(f"passes the KV cache as `{name}`, which this code does not know")
    return cache if cache is not None else past_key_values


class PrunedCheckpointError(ValueError):
    """A checkpoint's tensors disagree with its configuration (the message names the layer and the tensor)."""


def checkpoint_mismatch_message(mismatched, missing, unexpected) -> str | None:
    """One line naming the first layer and tensor where a checkpoint disagrees with its config, or `None`.

    `mismatched` holds `(name, checkpoint_shape, config_shape)` triples; `missing` and `unexpected` hold names.
    """
    problems = [
        f"{name} has shape {list(checkpoint_shape)} in the checkpoint but the config implies {list(config_shape)}"
        for name, checkpoint_shape, config_shape in sorted(mismatched)
    ]
    problems += [f"{name} is missing from the checkpoint" for name in sorted(missing)]
    problems += [f"{name} is in the checkpoint but not in the config" for name in sorted(unexpected)]
    if not problems:
        return None
    first = problems[0]
    where = f"layer {first.split('.layers.')[1].split('.')[0]}: " if ".layers." in first else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"checkpoint does not match its config: {where}{first}{more}"


class PrunedRMSNorm(nn.Module):
    """RMS norm scaled by `weight` (Llama), or by `1 + weight` in float32 before casting back (`unit_offset`: Gemma)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, unit_offset: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size) if unit_offset else torch.ones(hidden_size))
        self.variance_epsilon = eps
        self.unit_offset = unit_offset

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.unit_offset:
            return (hidden_states * (1.0 + self.weight.float())).to(input_dtype)
        return self.weight * hidden_states.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}" + (", unit_offset=True" if self.unit_offset else "")


class PrunedScaledEmbedding(nn.Embedding):
    """Token embeddings multiplied by a constant, rounded to the weights' dtype first (Gemma's sqrt(hidden_size))."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, multiplier: float) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.multiplier = multiplier

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * torch.tensor(self.multiplier).to(self.weight.dtype)


class PrunedRotaryEmbedding(nn.Module):
    """RoPE over the source model's full head dimension; narrowed layers pick their pairs from its output.

    `local=True` builds the RoPE of sliding-window layers from `config.local_rope_parameters` (Gemma 3).
    """

    def __init__(self, config: PrunedConfig, local: bool = False):
        super().__init__()
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        # The RoPE helpers read `config.head_dim`, which may vary per layer here: give them a homogeneous copy whose
        # head_dim is the one the frequencies were defined on.
        rope_config = copy.copy(config.per_layer_config[0])
        rope_config.head_dim = config.rope_head_dim
        if local:
            rope_config.rope_parameters = dict(config.local_rope_parameters)
        self.config = rope_config
        self.rope_type = rope_config.rope_parameters["rope_type"]
        rope_init_fn: Callable = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(rope_config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: PrunedConfig, **kwargs) -> tuple[torch.Tensor, float]:
        base = config.rope_parameters["rope_theta"]
        dim = config.head_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        return inv_freq, 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


class PrunedMLP(nn.Module):
    def __init__(self, config: PrunedConfig, intermediate_size: int):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.intermediate_size = intermediate_size
        self.gate_proj = nn.Linear(config.hidden_size, intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class PrunedAttention(nn.Module):
    """Grouped-query attention with this layer's own head counts and head dimension."""

    def __init__(self, config: PrunedConfig, layer_idx: int):
        super().__init__()
        layer = config.per_layer_config[layer_idx]
        # The global config, not the per-layer copy: `_attn_implementation` may be changed on it after init.
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = layer.num_attention_heads
        self.num_key_value_heads = layer.num_key_value_heads
        self.head_dim = layer.head_dim
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = layer.softmax_scale if layer.softmax_scale is not None else self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        self.sliding_window = config.sliding_window if config.layer_types[layer_idx] == "sliding_attention" else None

        hidden, qkv_bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden, self.num_key_value_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden, self.num_key_value_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, hidden, bias=config.attention_output_bias)
        if config.qk_norm:
            self.q_norm = PrunedRMSNorm(self.head_dim, eps=config.rms_norm_eps, unit_offset=config.norm_unit_offset)
            self.k_norm = PrunedRMSNorm(self.head_dim, eps=config.rms_norm_eps, unit_offset=config.norm_unit_offset)
        else:
            self.q_norm = self.k_norm = None

        # Columns of the full-width cos/sin this layer uses: pair p rotates dims p and p + rope_head_dim/2.
        self.rotary_pairs = layer.rotary_pairs
        if self.rotary_pairs is None:
            self.rotary_index = None
        else:
            self.rotary_index = nn.Buffer(self.compute_rotary_index(), persistent=False)

    def compute_rotary_index(self) -> torch.Tensor:
        pairs = torch.tensor(self.rotary_pairs, dtype=torch.long)
        return torch.cat([pairs, pairs + self.config.rope_head_dim // 2])

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)

        query_states = self.q_proj(hidden_states).view(hidden_shape)
        key_states = self.k_proj(hidden_states).view(hidden_shape)
        if self.q_norm is not None:
            query_states, key_states = self.q_norm(query_states), self.k_norm(key_states)
        query_states, key_states = query_states.transpose(1, 2), key_states.transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        cos, sin = position_embeddings
        if self.rotary_index is not None:
            cos, sin = cos.index_select(-1, self.rotary_index), sin.index_select(-1, self.rotary_index)
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)

        if cache is not None:
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            sliding_window=self.sliding_window,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


class PrunedDecoderLayer(GradientCheckpointingLayer):
    """A pre-norm decoder layer whose attention block and MLP block are each optional.

    With `config.sandwich_norms` (Gemma 3) each block also normalises its output: attention owns `input_layernorm`
    and `post_attention_layernorm`, the MLP owns `pre_feedforward_layernorm` and `post_feedforward_layernorm`.
    Otherwise attention owns `input_layernorm` and the MLP owns `post_attention_layernorm` (its input norm).
    """

    def __init__(self, config: PrunedConfig, layer_idx: int):
        super().__init__()
        layer = config.per_layer_config[layer_idx]
        skip = set(getattr(layer, "skip", None) or ())
        self.hidden_size = config.hidden_size
        self.layer_type = config.layer_types[layer_idx]
        self.sandwich_norms = config.sandwich_norms

        def norm() -> PrunedRMSNorm:
            return PrunedRMSNorm(config.hidden_size, eps=config.rms_norm_eps, unit_offset=config.norm_unit_offset)

        self.input_layernorm = self.self_attn = self.post_attention_layernorm = None
        self.pre_feedforward_layernorm = self.mlp = self.post_feedforward_layernorm = None
        if "self_attn" not in skip:
            self.input_layernorm = norm()
            self.self_attn = PrunedAttention(config, layer_idx)
            if self.sandwich_norms:
                self.post_attention_layernorm = norm()
        if "mlp" not in skip:
            if self.sandwich_norms:
                self.pre_feedforward_layernorm, self.post_feedforward_layernorm = norm(), norm()
            else:
                self.post_attention_layernorm = norm()
            self.mlp = PrunedMLP(config, layer.intermediate_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if self.self_attn is not None:
            residual = hidden_states
            attn_output, _ = self.self_attn(
                hidden_states=self.input_layernorm(hidden_states),
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=use_cache,
                position_embeddings=position_embeddings,
                **kwargs,
            )
            if self.sandwich_norms:
                attn_output = self.post_attention_layernorm(attn_output)
            hidden_states = residual + attn_output
        if self.mlp is not None:
            if self.sandwich_norms:
                mlp_output = self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(hidden_states)))
            else:
                mlp_output = self.mlp(self.post_attention_layernorm(hidden_states))
            hidden_states = hidden_states + mlp_output
        return hidden_states


class PrunedPreTrainedModel(PreTrainedModel):
    config: PrunedConfig
    config_class = PrunedConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PrunedDecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        # Non-persistent buffers are not in the checkpoint: rebuild them after loading on the meta device.
        if isinstance(module, PrunedAttention) and module.rotary_index is not None:
            init.copy_(module.rotary_index, module.compute_rotary_index())
        if isinstance(module, PrunedRMSNorm) and module.unit_offset:
            init.zeros_(module.weight)  # scales by 1 + weight: zero is the identity

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Load as usual, but refuse a checkpoint whose tensors disagree with its config, naming layer and tensor."""
        if kwargs.get("ignore_mismatched_sizes"):
            return super().from_pretrained(*args, **kwargs)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs)
        message = checkpoint_mismatch_message(info["mismatched_keys"], info["missing_keys"], info["unexpected_keys"])
        if message:
            raise PrunedCheckpointError(message)
        return (model, info) if want_info else model


class PrunedModel(PrunedPreTrainedModel):
    """The bare pruned decoder, returning hidden states."""

    def __init__(self, config: PrunedConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        if config.embedding_multiplier is None:
            self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        else:
            self.embed_tokens = PrunedScaledEmbedding(
                config.vocab_size, config.hidden_size, self.padding_idx, config.embedding_multiplier
            )
        self.layers = nn.ModuleList([PrunedDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = PrunedRMSNorm(config.hidden_size, eps=config.rms_norm_eps, unit_offset=config.norm_unit_offset)
        self.rotary_emb = PrunedRotaryEmbedding(config)
        # Sliding-window layers with a RoPE of their own (Gemma 3's local base frequency).
        self.local_rotary_emb = None
        if config.local_rope_parameters is not None:
            self.local_rotary_emb = PrunedRotaryEmbedding(config, local=True)
        self.gradient_checkpointing = False
        self.post_init()

    @property
    def first_attention_layer(self) -> int:
        """Where the cache's length is read: attention-free layers store nothing."""
        return next((i for i, kind in enumerate(self.config.layer_types) if kind != "mlp"), 0)

    def causal_mask_mapping(self, inputs_embeds, attention_mask, cache, position_ids) -> dict:
        """The attention mask of each layer type present (layers without attention need none)."""
        mask_kwargs = {
            "config": self.config,
            "inputs_embeds": inputs_embeds,
            "attention_mask": attention_mask,
            CACHE_NAME: cache,
            "position_ids": position_ids,
        }
        masks = {"mlp": None}
        if "full_attention" in self.config.layer_types:
            masks["full_attention"] = create_causal_mask(**mask_kwargs)
        if "sliding_attention" in self.config.layer_types:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
        return masks

    def position_embeddings(self, hidden_states, position_ids) -> dict:
        """The rotary `(cos, sin)` of each layer type (layers without attention need none)."""
        full = self.rotary_emb(hidden_states, position_ids)
        local = self.local_rotary_emb(hidden_states, position_ids) if self.local_rotary_emb is not None else full
        return {"full_attention": full, "sliding_attention": local, "mlp": None}

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        cache (`Cache`, *optional*):
            The KV cache; transformers before 5.25 passes it as `past_key_values`, which is accepted too.
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        cache = resolve_cache(cache, past_key_values, kwargs)
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if position_ids is None:
            past_seen_tokens = cache.get_seq_length(self.first_attention_layer) if cache is not None else 0
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen_tokens
            position_ids = position_ids.unsqueeze(0)

        # `generate` may hand over masks it prepared already, keyed by layer type.
        causal_mask_mapping = attention_mask
        if not isinstance(causal_mask_mapping, dict):
            causal_mask_mapping = self.causal_mask_mapping(inputs_embeds, attention_mask, cache, position_ids)

        hidden_states = inputs_embeds
        position_embeddings = self.position_embeddings(hidden_states, position_ids)
        all_hidden_states = () if output_hidden_states else None
        for decoder_layer in self.layers[: self.config.num_hidden_layers]:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states = decoder_layer(
                hidden_states,
                attention_mask=causal_mask_mapping.get(decoder_layer.layer_type),
                position_embeddings=position_embeddings[decoder_layer.layer_type],
                position_ids=position_ids,
                cache=cache,
                use_cache=use_cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, **{CACHE_NAME: cache if use_cache else None}
        )


class PrunedForCausalLM(PrunedPreTrainedModel, GenerationMixin):
    """The pruned decoder with its language-modeling head; loads with `AutoModelForCausalLM`."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}
    # What this model kept of the model it was pruned from, in the source's numbering: set by hf_prune's surgery
    # (a `PruningTrace`), None for a model loaded from disk, which is its own source. Not saved with the weights.
    pruning_trace = None

    def __init__(self, config: PrunedConfig):
        super().__init__(config)
        self.model = PrunedModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=resolve_cache(cache, past_key_values, kwargs),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, **{CACHE_NAME: getattr(outputs, CACHE_NAME)}
        )

    def can_generate_with_cache(self) -> bool:
        """Whether `generate` can use a KV cache here. It reads the cache's length from layer 0, and transformers
        5.23+ gives an attention-free layer a cache layer that has no length."""
        return self.config.layer_types[0] != "mlp" or hasattr(DynamicCache(config=self.config).layers[0], "get_seq_length")

    def generate(self, *args, **kwargs):
        # Refuse in one line rather than fail deep inside transformers.
        if kwargs.get("use_cache", self.generation_config.use_cache) is not False and not self.can_generate_with_cache():
            raise _unsupported(
                "cannot generate with a KV cache when layer 0 has no attention (it reads the cache length from "
                "layer 0); pass use_cache=False"
            )
        return super().generate(*args, **kwargs)


PrunedConfig.register_for_auto_class()
PrunedModel.register_for_auto_class("AutoModel")
PrunedForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "CACHE_NAME",
    "PrunedCheckpointError",
    "PrunedForCausalLM",
    "PrunedModel",
    "PrunedPreTrainedModel",
    "UnsupportedTransformersError",
]
