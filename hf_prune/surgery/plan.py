"""What to keep: the one description of a pruning that every scoring method produces and surgery applies."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidPruningError


@dataclass
class PruningPlan:
    """Which layers, heads, rotary pairs and MLP neurons of a model to keep, in the model's *current* numbering.

    Anything a field does not mention is kept. An empty list removes the whole block: `heads={3: []}` removes the
    attention of layer 3 (the layer keeps its MLP), `neurons={3: []}` its MLP.

    Args:
        removed_layers: indices of decoder layers to remove entirely.
        heads: per layer, the query heads to keep. Kept heads must fill every kept key/value group evenly: either
            whole groups are removed, or the same number of query heads is removed from every group.
        rotary_pairs: per layer, the rotary pairs (channel `p` and `p + head_dim / 2` of every head) to keep; this
            narrows the heads while keeping each pair's original RoPE frequency.
        neurons: per layer, the MLP intermediate neurons to keep (rows of gate/up, columns of down).

    Example:

    ```python
    >>> from hf_prune import PruningPlan
    >>> plan = PruningPlan(removed_layers=[4], heads={0: [0, 1, 4, 5]}, neurons={1: list(range(64))})
    >>> plan.is_empty()
    False

    ```
    """

    removed_layers: list[int] = field(default_factory=list)
    heads: dict[int, list[int]] = field(default_factory=dict)
    rotary_pairs: dict[int, list[int]] = field(default_factory=dict)
    neurons: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.removed_layers = sorted({int(i) for i in self.removed_layers})
        for name in ("heads", "rotary_pairs", "neurons"):
            per_layer = getattr(self, name)
            for layer, kept in per_layer.items():
                if len(set(kept)) != len(kept):
                    raise InvalidPruningError(f"layer {layer}: {name} to keep lists an index twice")
            setattr(self, name, {int(layer): sorted(int(i) for i in kept) for layer, kept in per_layer.items()})
            for layer in getattr(self, name):
                if layer in self.removed_layers:
                    raise InvalidPruningError(f"layer {layer} is removed, so its {name} cannot be kept")

    def is_empty(self) -> bool:
        """True when the plan keeps everything."""
        return not (self.removed_layers or self.heads or self.rotary_pairs or self.neurons)

    def to_dict(self) -> dict:
        """A JSON-ready form (layer indices as strings, as JSON requires)."""
        return {
            "removed_layers": self.removed_layers,
            "heads": {str(k): v for k, v in self.heads.items()},
            "rotary_pairs": {str(k): v for k, v in self.rotary_pairs.items()},
            "neurons": {str(k): v for k, v in self.neurons.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> PruningPlan:
        """Inverse of `to_dict`."""
        return cls(
            removed_layers=data.get("removed_layers", []),
            heads={int(k): v for k, v in data.get("heads", {}).items()},
            rotary_pairs={int(k): v for k, v in data.get("rotary_pairs", {}).items()},
            neurons={int(k): v for k, v in data.get("neurons", {}).items()},
        )
