"""Provenance of a pruned model: for every layer it still has, what it kept of the source model, in source numbering."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..architecture import PrunedConfig, PrunedForCausalLM
from ..architecture.families import pruned_config_from
from .plan import PruningPlan


@dataclass
class LayerTrace:
    """One kept layer, described in the source model's numbering.

    Attributes:
        source_layer: index of this layer in the source model.
        query_heads: source indices of the query heads kept (empty: attention removed).
        kv_heads: source indices of the key/value heads kept.
        neurons: source indices of the MLP intermediate neurons kept (empty: MLP removed).
        rotary_pairs: source indices of the rotary pairs kept in every head, or `None` for all.
    """

    source_layer: int
    query_heads: list[int]
    kv_heads: list[int]
    neurons: list[int]
    rotary_pairs: list[int] | None = None


@dataclass
class PruningTrace:
    """What a model kept of its source, updated by every surgery step.

    Example:

    ```python
    >>> from hf_prune import PrunedConfig
    >>> from hf_prune.surgery.trace import PruningTrace
    >>> trace = PruningTrace.identity(PrunedConfig(num_hidden_layers=4, num_attention_heads=4, hidden_size=64))
    >>> trace.removed_layers
    []

    ```
    """

    num_source_layers: int
    layers: list[LayerTrace] = field(default_factory=list)
    # The source model's config, for "before" figures (parameters, KV cache) once the model itself is gone.
    source_config: PrunedConfig | None = field(default=None, repr=False, compare=False)

    @classmethod
    def identity(cls, config: PrunedConfig) -> PruningTrace:
        """The trace of a model that is its own source (nothing removed yet)."""
        layers = []
        for index, layer in enumerate(config.per_layer_config):
            skip = set(getattr(layer, "skip", None) or ())
            has_attention, has_mlp = "self_attn" not in skip, "mlp" not in skip
            layers.append(
                LayerTrace(
                    source_layer=index,
                    query_heads=list(range(layer.num_attention_heads)) if has_attention else [],
                    kv_heads=list(range(layer.num_key_value_heads)) if has_attention else [],
                    neurons=list(range(layer.intermediate_size)) if has_mlp else [],
                    rotary_pairs=layer.rotary_pairs,
                )
            )
        return cls(num_source_layers=len(layers), layers=layers, source_config=config)

    @property
    def removed_layers(self) -> list[int]:
        """Source indices of the layers that are gone."""
        kept = {layer.source_layer for layer in self.layers}
        return [index for index in range(self.num_source_layers) if index not in kept]

    def to_plan(self) -> PruningPlan:
        """The single plan that takes the source model straight to this one (in the source's numbering)."""
        source = self.source_config
        plan = PruningPlan(removed_layers=self.removed_layers)
        for kept in self.layers:
            layer = source.per_layer_config[kept.source_layer]
            index = kept.source_layer
            if len(kept.query_heads) != layer.num_attention_heads:
                plan.heads[index] = list(kept.query_heads)
            if kept.rotary_pairs is not None and kept.rotary_pairs != layer.rotary_pairs:
                # Plans number pairs within the layer as it is; the trace names them by RoPE frequency.
                current = layer.rotary_pairs or list(range(source.rope_head_dim // 2))
                plan.rotary_pairs[index] = [current.index(pair) for pair in kept.rotary_pairs]
            if len(kept.neurons) != layer.intermediate_size:
                plan.neurons[index] = list(kept.neurons)
        return plan

    def to_dict(self) -> dict:
        return {"num_source_layers": self.num_source_layers, "layers": [asdict(layer) for layer in self.layers]}


def trace_of(model) -> PruningTrace:
    """What `model` kept of its source: the trace surgery gave it, or the identity for a model that is its own source
    (a stock model, or a checkpoint loaded from disk).

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> import hf_prune
    >>> from hf_prune.surgery import trace_of
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> trace_of(model).removed_layers, trace_of(hf_prune.remove_layers(model, [0])).removed_layers
    ([], [0])

    ```
    """
    if isinstance(model, PrunedForCausalLM) and model.pruning_trace is not None:
        return model.pruning_trace
    return PruningTrace.identity(pruned_config_from(model.config))
