"""The source architectures hf-prune understands, and conversion between them and the pruned format.

Every supported family is a pre-norm Llama-style decoder whose weights have the same names as the pruned model's, so
converting is a matter of translating the config and re-using the tensors. Gemma 3 differs in its config more than in
its weights: its translation is the `to_pruned` / `to_stock` pair of its `Family`. A pruned model can be written back in its
source architecture (a "stock" checkpoint that any transformers-based runtime reads) whenever that architecture can express it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import PretrainedConfig, PreTrainedModel

from ..errors import FormatError, UnsupportedArchitectureError
from .configuration_pruned import PrunedConfig
from .modeling_pruned import PrunedForCausalLM, PrunedRotaryEmbedding

# Fields every family's config shares with PrunedConfig, copied as they are in both directions.
_COMMON_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "use_cache",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
    "rope_parameters",
    "attention_dropout",
)


@dataclass(frozen=True)
class Family:
    """How one source architecture maps onto the pruned format.

    Attributes:
        model_type: transformers' `model_type` of the source (e.g. `"llama"`).
        biases: `(q/k/v bias, o_proj bias, MLP bias)` of a source config.
        qk_norm: whether the source normalises queries and keys per head (Qwen3).
        stock_fields: extra config fields a stock config of this family is built with, read from the pruned config.
        has_head_dim: whether the family's config has a `head_dim` field; without it head_dim is hidden / heads.
        to_pruned: `PrunedConfig` fields of a source config beyond the shared ones (and refusals, as one-line
            `UnsupportedArchitectureError`s).
        to_stock: the stock config's fields from the pruned config and the shared fields' values.
    """

    model_type: str
    biases: Callable[[PretrainedConfig], tuple[bool, bool, bool]]
    qk_norm: bool
    stock_fields: tuple[str, ...]
    has_head_dim: bool = True
    to_pruned: Callable[[PretrainedConfig], dict] | None = None
    to_stock: Callable[[PrunedConfig, dict], dict] | None = None

    def layer_types(self, config: PretrainedConfig) -> list[str]:
        sliding_window = getattr(config, "sliding_window", None)
        if getattr(config, "layer_types", None) is not None and self.model_type != "mistral":
            return list(config.layer_types)
        return ["sliding_attention" if sliding_window is not None else "full_attention"] * config.num_hidden_layers


def _gemma3_to_pruned(config: PretrainedConfig) -> dict:
    for name in ("final_logit_softcapping", "attn_logit_softcapping"):
        if getattr(config, name, None) is not None:
            raise UnsupportedArchitectureError(f"Gemma 3 with {name}={getattr(config, name)} is not supported")
    if getattr(config, "use_bidirectional_attention", False):
        raise UnsupportedArchitectureError("Gemma 3 with bidirectional attention (an encoder) is not supported")
    rope = config.rope_parameters
    return {
        "hidden_act": config.hidden_activation,
        "rope_parameters": dict(rope["full_attention"]),
        "local_rope_parameters": dict(rope["sliding_attention"]),
        "softmax_scale": config.query_pre_attn_scalar**-0.5,
        "norm_unit_offset": True,
        "sandwich_norms": True,
        "embedding_multiplier": config.hidden_size**0.5,
    }


def _gemma3_to_stock(config: PrunedConfig, values: dict) -> dict:
    scale = config.per_layer_config[0].softmax_scale  # the same in every layer (checked by the caller)
    scalar = round(scale**-2)
    if scalar**-0.5 != scale:
        raise FormatError(f"softmax scale {scale} is no query_pre_attn_scalar ** -0.5 that gemma3 accepts")
    values = dict(values, hidden_activation=values.pop("hidden_act"), query_pre_attn_scalar=scalar)
    values["rope_parameters"] = {
        "full_attention": dict(config.rope_parameters),
        "sliding_attention": dict(config.local_rope_parameters),
    }
    return values


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family(
            "llama",
            biases=lambda c: (c.attention_bias, c.attention_bias, c.mlp_bias),
            qk_norm=False,
            stock_fields=("head_dim", "attention_bias", "mlp_bias"),
        ),
        Family(
            "mistral",
            biases=lambda c: (False, False, False),
            qk_norm=False,
            stock_fields=("head_dim", "sliding_window"),
        ),
        Family(
            "qwen2",
            biases=lambda c: (True, False, False),
            qk_norm=False,
            stock_fields=("use_sliding_window", "sliding_window", "layer_types"),
            has_head_dim=False,
        ),
        Family(
            "qwen3",
            biases=lambda c: (c.attention_bias, c.attention_bias, False),
            qk_norm=True,
            stock_fields=("head_dim", "attention_bias", "use_sliding_window", "sliding_window", "layer_types"),
        ),
        Family(
            "gemma3_text",
            biases=lambda c: (c.attention_bias, c.attention_bias, False),
            qk_norm=True,
            stock_fields=("head_dim", "attention_bias", "sliding_window", "layer_types"),
            to_pruned=_gemma3_to_pruned,
            to_stock=_gemma3_to_stock,
        ),
    )
}


def get_family(model_type: str) -> Family:
    """Return the family of a transformers `model_type`, or raise naming the supported ones.

    Example:

    ```python
    >>> from hf_prune.architecture.families import get_family
    >>> get_family("qwen3").qk_norm
    True

    ```
    """
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}; hf-prune supports {', '.join(sorted(FAMILIES))}"
        ) from None


def pruned_config_from(config: PretrainedConfig) -> PrunedConfig:
    """Translate a stock config of a supported family into an equivalent, not yet pruned, `PrunedConfig`.

    Example:

    ```python
    >>> from transformers import Qwen2Config
    >>> from hf_prune.architecture.families import pruned_config_from
    >>> pruned_config_from(Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2)).attention_bias
    True

    ```
    """
    if isinstance(config, PrunedConfig):
        return config
    family = get_family(config.model_type)
    qkv_bias, o_bias, mlp_bias = family.biases(config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    fields = {field: getattr(config, field, None) for field in _COMMON_FIELDS}
    fields.update(family.to_pruned(config) if family.to_pruned is not None else {})
    pruned = PrunedConfig(
        **fields,
        head_dim=head_dim,
        attention_bias=qkv_bias,
        attention_output_bias=o_bias,
        mlp_bias=mlp_bias,
        qk_norm=family.qk_norm,
        sliding_window=getattr(config, "sliding_window", None),
        layer_types=family.layer_types(config),
        source_model_type=family.model_type,
    )
    pruned._name_or_path = config._name_or_path
    pruned._attn_implementation = config._attn_implementation
    return pruned


def stock_config_from(config: PrunedConfig) -> PretrainedConfig:
    """Express a pruned config in its source architecture, or raise `FormatError` saying why it cannot be.

    That is possible when every layer keeps its attention and MLP, all layers share the same widths, no layer
    narrowed its heads, and the family's config accepts the result (e.g. Qwen2 derives head_dim from hidden size).

    Example:

    ```python
    >>> from hf_prune import PrunedConfig
    >>> from hf_prune.architecture.families import stock_config_from
    >>> stock_config_from(PrunedConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=3)).model_type
    'llama'

    ```
    """
    from transformers import AutoConfig

    family = get_family(config.source_model_type)
    layers = list(config.per_layer_config)
    for index, layer in enumerate(layers):
        if getattr(layer, "skip", None):
            raise FormatError(f"layer {index} has no {' and no '.join(layer.skip)}, which {family.model_type} cannot express")
        if layer.rotary_pairs is not None:
            raise FormatError(f"layer {index} has narrowed heads, which {family.model_type} cannot express")
    scales = {layer.softmax_scale for layer in layers}
    if len(scales) > 1 or (family.to_stock is None and scales != {None}):
        raise FormatError(f"layers have their own softmax scales, which {family.model_type} cannot express")
    widths = {
        (layer.num_attention_heads, layer.num_key_value_heads, layer.head_dim, layer.intermediate_size)
        for layer in layers
    }
    if len(widths) > 1:
        raise FormatError(
            f"layers differ in width (heads, kv heads, head_dim, intermediate): {sorted(widths)}; "
            f"{family.model_type} needs the same widths in every layer"
        )
    heads, kv_heads, head_dim, intermediate = widths.pop()
    qkv_bias, o_bias, mlp_bias = config.attention_bias, config.attention_output_bias, config.mlp_bias
    if family.model_type in ("llama", "qwen3") and qkv_bias != o_bias:
        raise FormatError(f"{family.model_type} cannot express a bias on q/k/v but not on o_proj")
    if not family.has_head_dim and head_dim * heads != config.hidden_size:
        raise FormatError(
            f"{family.model_type} derives head_dim from hidden_size / num_attention_heads "
            f"({config.hidden_size} / {heads}), which is not the pruned head_dim {head_dim}"
        )
    # A per-layer view is a homogeneous config: reading the global fields from it raises no ambiguity error.
    values = {field: getattr(layers[0], field) for field in _COMMON_FIELDS}
    values.update(
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        head_dim=head_dim,
        attention_bias=qkv_bias,
        mlp_bias=mlp_bias,
        sliding_window=config.sliding_window,
        use_sliding_window=config.sliding_window is not None,
        layer_types=list(config.layer_types),
    )
    fields = {field: values[field] for field in (*_COMMON_FIELDS, *family.stock_fields)}
    if family.to_stock is not None:
        fields = family.to_stock(config, fields)
    try:
        stock = AutoConfig.for_model(family.model_type, **fields)
    except (ValueError, StrictDataclassError) as error:
        cause = error.__cause__ or error
        raise FormatError(f"{family.model_type} cannot express this model: {cause}") from error
    stock._name_or_path = config._name_or_path
    return stock


def build_model(
    model_class: type[PreTrainedModel], config: PretrainedConfig, state_dict: dict[str, torch.Tensor]
) -> PreTrainedModel:
    """Instantiate `model_class(config)` around existing tensors, without allocating or initialising new weights.

    The model is created on the meta device, the tensors of `state_dict` are assigned to it (shapes must match the
    config exactly), and the non-persistent buffers (rotary frequencies) are recomputed on the weights' device.
    """
    with torch.device("meta"):
        model = model_class(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    if config.tie_word_embeddings:
        missing = [key for key in missing if key != "lm_head.weight"]
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [key for key in expected if key in state_dict and expected[key].shape != state_dict[key].shape]
    if missing or unexpected or mismatched:
        raise FormatError(
            f"weights do not fit {model_class.__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"mismatched {mismatched[:3]}"
        )
    model.load_state_dict(state_dict, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    device = model.model.embed_tokens.weight.device
    _rebuild_buffers(model, device)
    return model


def _rebuild_buffers(model: PreTrainedModel, device: torch.device) -> None:
    """Recompute the buffers that are not saved with the weights (and so stayed on the meta device)."""
    if isinstance(model, PrunedForCausalLM):
        model.model.rotary_emb = PrunedRotaryEmbedding(model.config).to(device)
        if model.model.local_rotary_emb is not None:
            model.model.local_rotary_emb = PrunedRotaryEmbedding(model.config, local=True).to(device)
        for layer in model.model.layers:
            if layer.self_attn is not None and layer.self_attn.rotary_index is not None:
                layer.self_attn.rotary_index = layer.self_attn.compute_rotary_index().to(device)
    else:
        rotary = model.model.rotary_emb
        model.model.rotary_emb = type(rotary)(config=model.config).to(device)
        embedding = model.model.embed_tokens
        if hasattr(embedding, "scalar_embed_scale"):  # Gemma 3 keeps its embedding scale in a buffer
            embedding.embed_scale = torch.tensor(embedding.scalar_embed_scale, device=device)


def to_pruned(model: PreTrainedModel) -> PrunedForCausalLM:
    """Return `model` as a `PrunedForCausalLM` sharing its tensors (a pruned model is returned as is).

    The logits are the same as the source model's. `model` should not be used afterwards: surgery on the returned
    model may modify the shared tensors.

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.architecture.families import to_pruned
    >>> source = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...                                       num_attention_heads=4, vocab_size=128))
    >>> to_pruned(source).config.model_type
    'hf_pruned'

    ```
    """
    if isinstance(model, PrunedForCausalLM):
        return model
    config = pruned_config_from(model.config)
    config.dtype = model.dtype
    pruned = build_model(PrunedForCausalLM, config, model.state_dict())
    carry_over(model, pruned)
    return pruned


def to_stock(model: PrunedForCausalLM) -> PreTrainedModel:
    """Return `model` in its source architecture (e.g. `LlamaForCausalLM`), sharing its tensors.

    Raises `FormatError` naming the reason when the source architecture cannot express the pruned model. The result
    is a plain transformers model: it does not carry `model.pruning_trace`, so save the pruned model itself
    (`save_pruned` converts it when it writes) to keep what was removed in `pruning.json`.

    Example:

    ```python
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.architecture.families import to_stock
    >>> source = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                       num_attention_heads=4))
    >>> model = hf_prune.remove_layers(source, [1])
    >>> type(model).__name__, type(to_stock(model)).__name__
    ('PrunedForCausalLM', 'LlamaForCausalLM')

    ```
    """
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    stock_config = stock_config_from(model.config)
    stock_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(stock_config)]
    stock_config._attn_implementation = model.config._attn_implementation
    stock_config.dtype = model.dtype
    stock = build_model(stock_class, stock_config, model.state_dict())
    carry_over(model, stock)
    return stock


def carry_over(source: PreTrainedModel, target: PreTrainedModel) -> None:
    """Keep what a user expects to survive a conversion or surgery: generation settings, train/eval mode and name."""
    target.generation_config = source.generation_config
    target.train(source.training)
    target.name_or_path = source.name_or_path


__all__ = [
    "FAMILIES",
    "Family",
    "build_model",
    "carry_over",
    "get_family",
    "pruned_config_from",
    "stock_config_from",
    "to_pruned",
    "to_stock",
]
