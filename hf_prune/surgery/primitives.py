"""The surgery primitives a user calls directly: remove layers, attention heads, KV groups, rotary pairs, neurons.

Each one turns its request into a `PruningPlan` and applies it, so all of them share the same checks and produce a
model whose config matches its weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from transformers import PreTrainedModel

from ..architecture import PrunedConfig, PrunedForCausalLM
from ..architecture.families import to_pruned
from ..errors import InvalidPruningError
from .apply import apply_plan
from .plan import PruningPlan


def _complement(model: PrunedForCausalLM, removed: Mapping[int, Iterable[int]], size: str) -> dict[int, list[int]]:
    """Per layer, the indices to keep: all `range(layer.<size>)` not listed in `removed`."""
    keep = {}
    for layer, indices in removed.items():
        indices = set(indices)
        total = getattr(_layer_config(model, layer), size)
        out_of_range = sorted(i for i in indices if not 0 <= i < total)
        if out_of_range:
            raise InvalidPruningError(f"layer {layer}: indices {out_of_range} out of range ({size} is {total})")
        keep[layer] = [i for i in range(total) if i not in indices]
    return keep


def _layer_config(model: PrunedForCausalLM, layer: int) -> PrunedConfig:
    if not 0 <= layer < model.config.num_hidden_layers:
        raise InvalidPruningError(f"layer {layer} out of range for a {model.config.num_hidden_layers}-layer model")
    return model.config.per_layer_config[layer]


def remove_layers(model: PreTrainedModel, layers: Iterable[int]) -> PrunedForCausalLM:
    """Remove whole decoder layers; the rest are re-numbered (`layer_idx`, `num_hidden_layers`, `layer_types`).

    Equivalent to running the original model with those layers bypassed (their residual update skipped).

    Example:

    ```python
    >>> pruned = hf_prune.remove_layers(model, [21, 22, 23])  # doctest: +SKIP
    >>> pruned.config.num_hidden_layers  # doctest: +SKIP
    27

    ```
    """
    return apply_plan(model, PruningPlan(removed_layers=list(layers)))


def remove_heads(model: PreTrainedModel, heads: Mapping[int, Iterable[int]]) -> PrunedForCausalLM:
    """Remove query heads, per layer, keeping grouped-query attention valid.

    Either remove every query head of a key/value group (the KV head goes too), or remove the same number of query
    heads from every group. Anything else raises `InvalidPruningError` naming the layer. Removing all heads of a layer
    removes its attention block.

    Example:

    ```python
    >>> # SmolLM2-135M: 9 query heads in 3 KV groups of 3. Drop the second group of layer 4.
    >>> pruned = hf_prune.remove_heads(model, {4: [3, 4, 5]})  # doctest: +SKIP
    >>> pruned.model.layers[4].self_attn.num_key_value_heads  # doctest: +SKIP
    2

    ```
    """
    model = to_pruned(model)
    return apply_plan(model, PruningPlan(heads=_complement(model, heads, "num_attention_heads")))


def remove_kv_groups(model: PreTrainedModel, groups: Mapping[int, Iterable[int]]) -> PrunedForCausalLM:
    """Remove whole key/value groups (a KV head with all the query heads that read it), per layer.

    Example:

    ```python
    >>> pruned = hf_prune.remove_kv_groups(model, {4: [1]})  # doctest: +SKIP

    ```
    """
    model = to_pruned(model)
    heads = {}
    for layer, removed in groups.items():
        spec = _layer_config(model, layer)
        group_size = spec.num_attention_heads // spec.num_key_value_heads
        heads[layer] = [g * group_size + i for g in set(removed) for i in range(group_size)]
    return remove_heads(model, heads)


def remove_rotary_pairs(model: PreTrainedModel, pairs: Mapping[int, Iterable[int]]) -> PrunedForCausalLM:
    """Narrow the heads of some layers by removing rotary pairs (channels `p` and `p + head_dim/2` of every head).

    The kept pairs keep their original RoPE frequencies and the layer keeps its original softmax scale, so the
    result is exact wherever the removed channels contributed nothing. Needs the pruned format.

    Example:

    ```python
    >>> pruned = hf_prune.remove_rotary_pairs(model, {0: [30, 31]})  # doctest: +SKIP
    >>> pruned.model.layers[0].self_attn.head_dim  # doctest: +SKIP
    60

    ```
    """
    model = to_pruned(model)
    keep = {}
    for layer, removed in pairs.items():
        removed = set(removed)
        keep[layer] = [p for p in range(_layer_config(model, layer).head_dim // 2) if p not in removed]
    return apply_plan(model, PruningPlan(rotary_pairs=keep))


def remove_neurons(model: PreTrainedModel, neurons: Mapping[int, Iterable[int]]) -> PrunedForCausalLM:
    """Remove MLP intermediate neurons: their rows of gate_proj and up_proj and their column of down_proj together.

    Removing every neuron of a layer removes its MLP block.

    Example:

    ```python
    >>> pruned = hf_prune.remove_neurons(model, {0: range(256)})  # doctest: +SKIP
    >>> pruned.model.layers[0].mlp.intermediate_size  # doctest: +SKIP
    1280

    ```
    """
    model = to_pruned(model)
    return apply_plan(model, PruningPlan(neurons=_complement(model, neurons, "intermediate_size")))
