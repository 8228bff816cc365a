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
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=128, num_hidden_layers=4,
    ...                                      num_attention_heads=6, num_key_value_heads=2))  # 2 KV groups of 3 heads
    >>> pruned = hf_prune.remove_layers(model, [1, 2])
    >>> pruned.config.num_hidden_layers, pruned.pruning_trace.removed_layers
    (2, [1, 2])

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
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=128, num_hidden_layers=4,
    ...                                      num_attention_heads=6, num_key_value_heads=2))  # 2 KV groups of 3 heads
    >>> layer = hf_prune.remove_heads(model, {3: [3, 4, 5]}).config.per_layer_config[3]  # the second KV group
    >>> layer.num_attention_heads, layer.num_key_value_heads
    (3, 1)
    >>> layer = hf_prune.remove_heads(model, {3: [0, 5]}).config.per_layer_config[3]  # one head of each group
    >>> layer.num_attention_heads, layer.num_key_value_heads
    (4, 2)

    ```
    """
    model = to_pruned(model)
    return apply_plan(model, PruningPlan(heads=_complement(model, heads, "num_attention_heads")))


def remove_kv_groups(model: PreTrainedModel, groups: Mapping[int, Iterable[int]]) -> PrunedForCausalLM:
    """Remove whole key/value groups (a KV head with all the query heads that read it), per layer.

    Example:

    ```python
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=128, num_hidden_layers=4,
    ...                                      num_attention_heads=6, num_key_value_heads=2))  # 2 KV groups of 3 heads
    >>> pruned = hf_prune.remove_kv_groups(model, {0: [1]})
    >>> pruned.config.per_layer_config[0].num_attention_heads, pruned.config.per_layer_config[0].num_key_value_heads
    (3, 1)

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
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=128, num_hidden_layers=4,
    ...                                      num_attention_heads=6, num_key_value_heads=2))  # 2 KV groups of 3 heads
    >>> pruned = hf_prune.remove_rotary_pairs(model, {0: [6, 7]})  # head_dim 16: rotary pairs 0..7
    >>> pruned.config.per_layer_config[0].head_dim
    12

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
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=128, num_hidden_layers=4,
    ...                                      num_attention_heads=6, num_key_value_heads=2))  # 2 KV groups of 3 heads
    >>> pruned = hf_prune.remove_neurons(model, {0: range(32)})
    >>> pruned.config.per_layer_config[0].intermediate_size, pruned.config.per_layer_config[1].intermediate_size
    (96, 128)

    ```
    """
    model = to_pruned(model)
    return apply_plan(model, PruningPlan(neurons=_complement(model, neurons, "intermediate_size")))
