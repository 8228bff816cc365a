"""What every scoring method shares: its config base class, the scores it returns, and the prune loop."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import PreTrainedModel

from ..architecture import PrunedForCausalLM
from ..calibration.data import CalibrationData
from ..checkpoint.layer_source import LayerSource, StreamedLayers, as_layer_source
from ..errors import InvalidPruningError
from ..surgery import PruningPlan


@dataclass
class Scores:
    """The importance scores a method computed, in the source model's numbering (higher = more important).

    Attributes:
        method: the method's name.
        layer_scores: one float per layer (depth methods).
        head_scores / kv_group_scores / neuron_scores: a list per layer (width methods).
        extra: anything else worth recording (e.g. the contiguous-block distances, the iterative removal order).

    Example:

    ```python
    >>> Scores("block-influence", layer_scores=[0.3, 0.01, 0.2]).to_dict()
    {'method': 'block-influence', 'layer_scores': [0.3, 0.01, 0.2]}

    ```
    """

    method: str
    layer_scores: list[float] | None = None
    head_scores: list[list[float]] | None = None
    kv_group_scores: list[list[float]] | None = None
    neuron_scores: list[list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`scores.json`, and the `scores` of `pruning.json`), without the empty fields."""
        data = {"method": self.method}
        for name in ("layer_scores", "head_scores", "kv_group_scores", "neuron_scores"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        data.update(self.extra)
        return data


@dataclass
class PruningTarget:
    """How much to remove: a number of layers (depth methods) or a ratio (layers for depth methods, width for width
    methods). Exactly one is set.

    Example:

    ```python
    >>> PruningTarget(ratio=0.25).layers_to_remove(30)
    8

    ```
    """

    num_layers: int | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        if (self.num_layers is None) == (self.ratio is None):
            raise InvalidPruningError("give exactly one of a ratio or a number of layers")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise InvalidPruningError(f"ratio must be strictly between 0 and 1, got {self.ratio}")
        if self.num_layers is not None and self.num_layers < 1:
            raise InvalidPruningError(f"number of layers to remove must be at least 1, got {self.num_layers}")

    def layers_to_remove(self, num_layers: int) -> int:
        """Layers to remove from a `num_layers`-layer model (a ratio is rounded, to at least one layer)."""
        count = self.num_layers if self.num_layers is not None else max(1, round(self.ratio * num_layers))
        if count >= num_layers:
            raise InvalidPruningError(f"cannot remove {count} of {num_layers} layers; at least one must remain")
        return count

    def to_dict(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers} if self.num_layers is not None else {"ratio": self.ratio}


@dataclass
class MethodConfig:
    """Base class of every method's configuration; each method documents its own fields.

    Class attributes:
        method: the name users type (`--method`).
        kind: `"depth"` (removes layers) or `"width"` (removes heads and neurons).
        needs_calibration: whether the method reads calibration data.
        paper: the citation shown in model cards.
    """

    method: ClassVar[str]
    kind: ClassVar[str]
    needs_calibration: ClassVar[bool] = True
    paper: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        """The method's name and its fields, as `pruning.json` keeps them under `settings`."""
        return {"method": self.method, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodConfig:
        """The configuration `to_dict` described (unknown field, or another method's name: one-line error).

        Example:

        ```python
        >>> from hf_prune.scoring import BlockInfluenceConfig
        >>> BlockInfluenceConfig.from_dict({"method": "block-influence", "metric": "angular"})
        BlockInfluenceConfig(metric='angular', iterative=False, contiguous=False)

        ```
        """
        options = dict(data)
        method = options.pop("method", cls.method)
        if method != cls.method:
            raise InvalidPruningError(f"settings of method {method!r} are not a {cls.__name__}")
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidPruningError(f"method {cls.method} has no option {', '.join(unknown)}")
        return cls(**options)


@dataclass
class PruningResult:
    """What `PruningMethod.prune` returns: the pruned model (or, for a streamed source, the pruned source, whose
    weights exist only once saved), its scores, and the plan applied."""

    model: PrunedForCausalLM | StreamedLayers
    scores: Scores
    plan: PruningPlan


class PruningMethod(ABC):
    """Scores a model's structures and decides which to remove. Subclasses implement `score` and `select`.

    Every method takes a model in memory or a `LayerSource` (`load_streamed`), and reads layers only through
    `as_layer_source(model).layers()`.
    """

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    @abstractmethod
    def score(
        self,
        model: PreTrainedModel | LayerSource,
        data: CalibrationData | None,
        target: PruningTarget | None = None,
        *,
        batch_size: int = 1,
        progress: bool = True,
    ) -> Scores:
        """Importance scores of the model's structures."""

    @abstractmethod
    def select(self, model: PreTrainedModel | LayerSource, scores: Scores, target: PruningTarget) -> PruningPlan:
        """The plan that removes the least important structures to reach `target`."""

    def prune(
        self,
        model: PreTrainedModel | LayerSource,
        data: CalibrationData | None,
        target: PruningTarget,
        *,
        batch_size: int = 1,
        progress: bool = True,
    ) -> PruningResult:
        """Score, select, and physically remove (one shot; iterative methods override this)."""
        source = as_layer_source(model)
        scores = self.score(source, data, target, batch_size=batch_size, progress=progress)
        plan = self.select(source, scores, target)
        return PruningResult(source.apply_plan(plan).unwrap(), scores, plan)
