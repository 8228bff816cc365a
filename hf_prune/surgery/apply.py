"""Applying a `PruningPlan`: slice the weights, write the matching config, rebuild the model around both.

The model is never edited in place. A new config is derived from the plan, the kept rows and columns are copied out of
the old tensors, and a fresh `PrunedForCausalLM` is built from exactly that config and those tensors, so the result's
config always matches its weights. Tensors that the plan does not touch are shared with the input model, which
remains usable.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ..architecture import PrunedConfig, PrunedForCausalLM
from ..architecture.families import build_model, carry_over, to_pruned
from ..errors import InvalidPruningError
from .plan import PruningPlan
from .trace import LayerTrace, PruningTrace, trace_of


def apply_plan(model: PreTrainedModel, plan: PruningPlan) -> PrunedForCausalLM:
    """Return a model with only what `plan` keeps, physically removed from the weights and the config.

    `model` may be a stock model of a supported family (it is converted first) or a `PrunedForCausalLM`. The
    returned model carries a `pruning_trace` mapping everything it kept back to the source model's numbering.

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune import PruningPlan, apply_plan
    >>> source = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
    ...                                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2))
    >>> pruned = apply_plan(source, PruningPlan(removed_layers=[2], heads={0: [0, 1]}, neurons={1: [0, 5, 9]}))
    >>> pruned.config.num_hidden_layers, pruned.model.layers[0].self_attn.num_key_value_heads
    (3, 1)
    >>> pruned.pruning_trace.removed_layers
    [2]

    ```
    """
    model = to_pruned(model)
    config = model.config
    num_layers = config.num_hidden_layers
    _check_plan_indices(plan, num_layers)
    trace = trace_of(model)

    old_state = model.state_dict()
    new_state = {key: value for key, value in old_state.items() if not key.startswith("model.layers.")}
    specs, layer_types, layer_traces = [], [], []
    kept_layers = [index for index in range(num_layers) if index not in plan.removed_layers]
    for new_index, old_index in enumerate(kept_layers):
        old_layer = config.per_layer_config[old_index]
        spec, layer_state, layer_trace = prune_layer(
            old_index, old_layer, config, plan, _layer_state(old_state, old_index), trace.layers[old_index]
        )
        specs.append(spec)
        layer_types.append("mlp" if "self_attn" in spec.get("skip", []) else config.layer_types[old_index])
        layer_traces.append(layer_trace)
        new_state.update({f"model.layers.{new_index}.{name}": tensor for name, tensor in layer_state.items()})

    new_config = _derive_config(config, specs, layer_types)
    pruned = build_model(PrunedForCausalLM, new_config, new_state)
    carry_over(model, pruned)
    pruned.pruning_trace = PruningTrace(trace.num_source_layers, layer_traces, source_config=trace.source_config)
    return pruned


def _check_plan_indices(plan: PruningPlan, num_layers: int) -> None:
    out_of_range = [i for i in plan.removed_layers if not 0 <= i < num_layers]
    for name in ("heads", "rotary_pairs", "neurons"):
        out_of_range += [i for i in getattr(plan, name) if not 0 <= i < num_layers]
    if out_of_range:
        raise InvalidPruningError(f"layer indices {sorted(set(out_of_range))} out of range for a {num_layers}-layer model")
    if len(plan.removed_layers) >= num_layers:
        raise InvalidPruningError(f"cannot remove all {num_layers} layers; at least one must remain")


def _layer_state(state: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    prefix = f"model.layers.{index}."
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def prune_layer(
    index: int,
    layer: PrunedConfig,
    config: PrunedConfig,
    plan: PruningPlan,
    state: dict[str, torch.Tensor],
    trace: LayerTrace,
) -> tuple[dict, dict[str, torch.Tensor], LayerTrace]:
    """Slice one layer's tensors as `plan` says; return its new per-layer config, tensors and provenance.

    `state` holds the layer's tensors by their names inside the layer (`self_attn.q_proj.weight`, ...). Layer
    streaming calls this directly, one layer at a time.
    """
    skip = list(getattr(layer, "skip", None) or [])
    spec = {
        "num_attention_heads": layer.num_attention_heads,
        "num_key_value_heads": layer.num_key_value_heads,
        "head_dim": layer.head_dim,
        "intermediate_size": layer.intermediate_size,
        "rotary_pairs": layer.rotary_pairs,
        "softmax_scale": layer.softmax_scale,
    }
    trace = LayerTrace(**vars(trace))

    if index in plan.heads or index in plan.rotary_pairs:
        if "self_attn" in skip:
            raise InvalidPruningError(f"layer {index} has no attention left to prune")
        heads = plan.heads.get(index, list(range(layer.num_attention_heads)))
        groups = _kept_groups(index, heads, layer.num_attention_heads, layer.num_key_value_heads)
        if not heads:
            skip.append("self_attn")
            spec.update(num_attention_heads=0, num_key_value_heads=0, rotary_pairs=None, softmax_scale=None)
            state = {k: v for k, v in state.items() if not k.startswith(_attention_modules(config))}
            trace.query_heads, trace.kv_heads, trace.rotary_pairs = [], [], None
        else:
            channels, pairs = _kept_channels(index, layer, plan.rotary_pairs.get(index), config.rope_head_dim)
            _slice_attention(state, heads, groups, channels, layer.head_dim, config.norm_unit_offset)
            spec.update(num_attention_heads=len(heads), num_key_value_heads=len(groups), head_dim=len(channels))
            if index in plan.rotary_pairs:
                # Narrower heads keep the source's softmax scale, so each kept channel contributes exactly as before.
                spec.update(rotary_pairs=pairs, softmax_scale=layer.softmax_scale or layer.head_dim**-0.5)
                trace.rotary_pairs = pairs
            trace.query_heads = [trace.query_heads[h] for h in heads]
            trace.kv_heads = [trace.kv_heads[g] for g in groups]

    if index in plan.neurons:
        if "mlp" in skip:
            raise InvalidPruningError(f"layer {index} has no MLP left to prune")
        neurons = plan.neurons[index]
        if neurons and neurons[-1] >= layer.intermediate_size:
            raise InvalidPruningError(
                f"layer {index}: neuron {neurons[-1]} out of range (intermediate_size {layer.intermediate_size})"
            )
        if not neurons:
            skip.append("mlp")
            spec["intermediate_size"] = 0
            state = {k: v for k, v in state.items() if not k.startswith(_mlp_modules(config))}
        else:
            _slice_mlp(state, neurons)
            spec["intermediate_size"] = len(neurons)
        trace.neurons = [trace.neurons[n] for n in neurons]

    if skip:
        spec["skip"] = skip
    return spec, state, trace


def _attention_modules(config: PrunedConfig) -> tuple[str, ...]:
    """Prefixes of the tensors an attention block owns (with sandwich norms, its output norm too)."""
    return ("self_attn.", "input_layernorm.") + (("post_attention_layernorm.",) if config.sandwich_norms else ())


def _mlp_modules(config: PrunedConfig) -> tuple[str, ...]:
    """Prefixes of the tensors an MLP block owns (without sandwich norms, `post_attention_layernorm` is its input)."""
    if config.sandwich_norms:
        return ("mlp.", "pre_feedforward_layernorm.", "post_feedforward_layernorm.")
    return ("mlp.", "post_attention_layernorm.")


def _kept_groups(index: int, heads: list[int], num_heads: int, num_kv_heads: int) -> list[int]:
    """The key/value heads that kept query heads belong to; refuse uneven groups (they break GQA)."""
    if heads and heads[-1] >= num_heads:
        raise InvalidPruningError(f"layer {index}: query head {heads[-1]} out of range (the layer has {num_heads})")
    group_size = num_heads // num_kv_heads
    per_group: dict[int, int] = {}
    for head in heads:
        per_group[head // group_size] = per_group.get(head // group_size, 0) + 1
    if len(set(per_group.values())) > 1:
        counts = ", ".join(f"group {g}: {n}" for g, n in sorted(per_group.items()))
        raise InvalidPruningError(
            f"layer {index}: kept query heads fill key/value groups unevenly ({counts} of {group_size}); "
            "remove whole KV groups or the same number of query heads from every group"
        )
    return sorted(per_group)


def _kept_channels(
    index: int, layer: PrunedConfig, kept_pairs: list[int] | None, rope_head_dim: int
) -> tuple[list[int], list[int] | None]:
    """Channels kept inside every head (rotate-half layout: pair p is channels p and p + head_dim/2).

    Returns the channel indices in the current head and the kept pairs in the source's numbering.
    """
    half = layer.head_dim // 2
    if kept_pairs is None:
        return list(range(layer.head_dim)), layer.rotary_pairs
    if not kept_pairs:
        raise InvalidPruningError(f"layer {index}: keep at least one rotary pair, or keep no heads")
    if kept_pairs[-1] >= half:
        raise InvalidPruningError(f"layer {index}: rotary pair {kept_pairs[-1]} out of range (head_dim {layer.head_dim})")
    source_pairs = layer.rotary_pairs if layer.rotary_pairs is not None else list(range(rope_head_dim // 2))
    return kept_pairs + [p + half for p in kept_pairs], [source_pairs[p] for p in kept_pairs]


def _rows(units: list[int], unit_size: int, channels: list[int]) -> torch.Tensor:
    return torch.tensor([unit * unit_size + c for unit in units for c in channels], dtype=torch.long)


def _slice_attention(
    state: dict[str, torch.Tensor],
    heads: list[int],
    groups: list[int],
    channels: list[int],
    head_dim: int,
    norm_unit_offset: bool = False,
) -> None:
    q_rows = _rows(heads, head_dim, channels)
    kv_rows = _rows(groups, head_dim, channels)
    for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
        for kind in ("weight", "bias"):
            key = f"self_attn.{name}.{kind}"
            if key in state:
                state[key] = state[key].index_select(0, rows.to(state[key].device))
    o_weight = state["self_attn.o_proj.weight"]
    state["self_attn.o_proj.weight"] = o_weight.index_select(1, q_rows.to(o_weight.device))
    for norm in ("q_norm", "k_norm"):
        key = f"self_attn.{norm}.weight"
        if key in state:
            # The per-head RMSNorm now averages over fewer channels; rescaling by sqrt(d / d') keeps its output
            # unchanged when the removed channels were zero (exactly so up to the norm's epsilon).
            kept = state[key].index_select(0, torch.tensor(channels, device=state[key].device))
            rescale = (head_dim / len(channels)) ** 0.5
            # A Gemma norm scales by 1 + weight: rescale that product, not the weight.
            if norm_unit_offset:  # in float64: 1 + w' must round to (1 + w) * rescale, not w' alone
                state[key] = ((1 + kept.double()) * rescale - 1).to(kept.dtype)
            else:
                state[key] = kept * rescale


def _slice_mlp(state: dict[str, torch.Tensor], neurons: list[int]) -> None:
    index = torch.tensor(neurons, dtype=torch.long)
    for name in ("gate_proj", "up_proj"):
        for kind in ("weight", "bias"):
            key = f"mlp.{name}.{kind}"
            if key in state:
                state[key] = state[key].index_select(0, index.to(state[key].device))
    down = state["mlp.down_proj.weight"]
    state["mlp.down_proj.weight"] = down.index_select(1, index.to(down.device))


def _derive_config(config: PrunedConfig, specs: list[dict], layer_types: list[str]) -> PrunedConfig:
    """The source config with the new depth, layer types and per-layer sizes."""
    values = config.to_dict()
    values.update(
        num_hidden_layers=len(specs),
        layer_types=layer_types,
        per_layer_config={index: spec for index, spec in enumerate(specs)},
    )
    new_config = PrunedConfig.from_dict(values)
    new_config._attn_implementation = config._attn_implementation
    new_config._name_or_path = config._name_or_path
    return new_config
