"""What every width method shares: its options, the activation statistic, and turning scores into a GQA-safe plan.

Width methods remove attention heads and MLP neurons inside layers and never touch the hidden size. A method only
has to score query heads and neurons (`WidthMethod.score_structures`); this module decides how many to keep (uniform:
the same width in every layer; adaptive: one ranking across layers with a floor per layer), keeps grouped-query
attention valid (whole KV groups, or the same number of query heads in every group), and runs the K-shot schedule.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from ..calibration.data import CalibrationData
from ..calibration.engine import Statistic, tokens_of
from ..checkpoint.layer_source import LayerSource, as_layer_source
from ..errors import InvalidPruningError
from ..surgery import PruningPlan
from .base import MethodConfig, PruningMethod, PruningResult, PruningTarget, Scores

logger = logging.getLogger(__name__)


@dataclass
class MLPWidthConfig(MethodConfig):
    """Options of methods that prune MLP neurons.

    Args:
        mlp_ratio: fraction of each layer's MLP neurons to remove; defaults to `--ratio`.
        mlp_width: MLP neurons to keep per layer (instead of a ratio).
        allocation: `"uniform"` keeps the same width in every layer (a stock checkpoint when nothing else changes);
            `"adaptive"` ranks all layers' structures together, with scores normalised by their layer's mean, and
            removes the lowest until the overall ratio is reached (a heterogeneous checkpoint).
        min_keep: with adaptive allocation, the fraction of each layer's width that is always kept.
    """

    kind = "width"

    mlp_ratio: float | None = field(default=None, metadata={"help": "fraction of MLP neurons to remove"})
    mlp_width: int | None = field(default=None, metadata={"help": "MLP neurons to keep per layer"})
    allocation: Literal["uniform", "adaptive"] = field(
        default="uniform", metadata={"help": "same width in every layer, or one ranking across layers"}
    )
    min_keep: float = field(default=0.1, metadata={"help": "adaptive: fraction of every layer always kept"})

    def __post_init__(self) -> None:
        for name in ("attention_ratio", "mlp_ratio"):
            value = getattr(self, name, None)
            if value is not None and not 0 <= value < 1:
                raise InvalidPruningError(f"{name.replace('_', '-')} must be in [0, 1), got {value}")
        for name in ("attention_width", "mlp_width"):
            value = getattr(self, name, None)
            if value is not None and value < 1:
                raise InvalidPruningError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.allocation not in ("uniform", "adaptive"):
            raise InvalidPruningError(f"allocation must be 'uniform' or 'adaptive', got {self.allocation!r}")
        if not 0 < self.min_keep <= 1:
            raise InvalidPruningError(f"min-keep must be in (0, 1], got {self.min_keep}")


@dataclass
class WidthConfig(MLPWidthConfig):
    """Options of methods that prune attention heads and MLP neurons (see `MLPWidthConfig` for the MLP ones).

    Args:
        attention_ratio: fraction of each layer's attention width (query heads) to remove; defaults to `--ratio`.
        attention_width: query heads to keep per layer (instead of a ratio).
        gqa: how attention shrinks under grouped-query attention: `"groups"` removes whole KV groups (a KV head
            and its query heads: the KV cache shrinks too), `"heads"` removes the same number of query heads from
            every group (the KV cache stays).
    """

    attention_ratio: float | None = field(default=None, metadata={"help": "fraction of attention width to remove"})
    attention_width: int | None = field(default=None, metadata={"help": "query heads to keep per layer"})
    gqa: Literal["groups", "heads"] = field(
        default="groups", metadata={"help": "remove whole KV groups, or query heads evenly within every group"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gqa not in ("groups", "heads"):
            raise InvalidPruningError(f"gqa must be 'groups' or 'heads', got {self.gqa!r}")


class ChannelEnergy(Statistic):
    """Per layer, the sum over tokens of the square of every channel entering o_proj and down_proj.

    `sqrt` of it is each channel's L2 norm over the calibration tokens: TransAct's channel salience and the
    `||X||` of Wanda. Only the transitional activations are watched; the residual stream is never pruned.
    """

    def __init__(self, attention: bool = True, mlp: bool = True) -> None:
        super().__init__()
        self.attention, self.mlp = attention, mlp

    def targets(self, model: PreTrainedModel) -> dict[str, nn.Module]:
        targets = {}
        for index, layer in enumerate(model.base_model.layers):
            if self.attention and getattr(layer, "self_attn", None) is not None:
                targets[f"attn.{index}"] = layer.self_attn.o_proj
            if self.mlp and getattr(layer, "mlp", None) is not None:
                targets[f"mlp.{index}"] = layer.mlp.down_proj
        return targets

    def update(self, key, inputs, output, mask, batch_index) -> None:
        tokens = tokens_of(inputs, mask)
        self.add(key, tokens.pow(2).sum(0))

    def norms(self, key: str) -> torch.Tensor | None:
        """Per-channel L2 norm over the calibration tokens, or None for a layer without that block."""
        return self.sums[key].sqrt() if key in self.sums else None


@dataclass
class Widths:
    """Per layer, how many query heads and MLP neurons to keep; layers not listed are left alone.

    With adaptive allocation only the totals matter (`head_budget`, `neuron_budget`; the per-layer sums when unset):
    all listed layers compete for them.
    """

    heads: dict[int, int] = field(default_factory=dict)
    neurons: dict[int, int] = field(default_factory=dict)
    head_budget: int | None = None
    neuron_budget: int | None = None
    # The source model's widths, against which adaptive allocation's `min_keep` floor is taken at every shot (taken
    # against the current widths, the floor would compound shot by shot).
    source_heads: dict[int, int] = field(default_factory=dict)
    source_neurons: dict[int, int] = field(default_factory=dict)

    def budget(self, kind: str) -> int:
        explicit = self.head_budget if kind == "heads" else self.neuron_budget
        return explicit if explicit is not None else sum(getattr(self, kind).values())


class WidthMethod(PruningMethod):
    """Base of width methods: subclasses score query heads and neurons; this class does the rest."""

    config: MLPWidthConfig
    shots = 1

    @property
    def prunes_attention(self) -> bool:
        return isinstance(self.config, WidthConfig)

    def score_structures(self, source: LayerSource, data: CalibrationData | None, *, batch_size: int, progress: bool) -> Scores:
        """`head_scores` (per query head) and `neuron_scores`, one list per layer (None where a block is absent)."""
        raise NotImplementedError

    def score(self, model, data, target=None, *, batch_size=1, progress=True) -> Scores:
        source = as_layer_source(model).to_pruned()
        scores = self.score_structures(source, data, batch_size=batch_size, progress=progress)
        if scores.head_scores is not None:
            scores.kv_group_scores = group_scores(source, scores.head_scores)
        return scores

    # -- how much to keep --------------------------------------------------------------------------------------

    def final_widths(self, model: PreTrainedModel | LayerSource, target: PruningTarget | None) -> Widths:
        """The widths the whole schedule ends at (uniform) or the overall budget it ends at (adaptive)."""
        config, layers = self.config, as_layer_source(model).layer_configs
        ratio = target.ratio if target is not None else None
        if target is not None and target.num_layers is not None:
            raise InvalidPruningError(f"{config.method} removes heads and neurons: give --ratio, not --num-layers")
        attention_ratio = getattr(config, "attention_ratio", None)
        attention_ratio = attention_ratio if attention_ratio is not None else ratio
        mlp_ratio = config.mlp_ratio if config.mlp_ratio is not None else ratio
        widths = Widths()
        for index, layer in enumerate(layers):
            skip = set(getattr(layer, "skip", None) or ())
            if self.prunes_attention and "self_attn" not in skip:
                heads = _kept_heads(layer, config, attention_ratio)
                if heads is not None:
                    widths.heads[index] = heads
                    widths.source_heads[index] = layer.num_attention_heads
            if "mlp" not in skip:
                widths.source_neurons[index] = layer.intermediate_size
                if config.mlp_width is not None:
                    widths.neurons[index] = min(config.mlp_width, layer.intermediate_size)
                elif mlp_ratio is not None:
                    widths.neurons[index] = max(1, round((1 - mlp_ratio) * layer.intermediate_size))
        if not widths.heads and not widths.neurons:
            raise InvalidPruningError(f"{config.method}: say how much to remove (--ratio, or method options)")
        single = [index for index in widths.heads if gqa_mode(layers[index], config.gqa) != config.gqa]
        if single:
            logger.warning(
                "%s: layers %s have a single KV head; removing it would remove all their attention, so their query "
                "heads are pruned within the group (gqa='heads')", config.method, _ranges(single),
            )
        return widths

    # -- which to keep -----------------------------------------------------------------------------------------

    def plan_for(self, model: PreTrainedModel | LayerSource, scores: Scores, widths: Widths) -> PruningPlan:
        """Keep the highest-scoring heads and neurons so that each layer has (at most) `widths`."""
        layers = as_layer_source(model).layer_configs
        plan = PruningPlan()
        if self.config.allocation == "adaptive":
            head_keep = _adaptive_head_keep(layers, scores, widths, self.config)
            neuron_keep = _adaptive_keep(
                {index: scores.neuron_scores[index] for index in widths.neurons},
                widths.budget("neurons"),
                self.config.min_keep,
                widths.source_neurons,
            )
        else:
            head_keep, neuron_keep = widths.heads, widths.neurons
        for index, count in head_keep.items():
            kept = _keep_heads(layers[index], scores.head_scores[index], count, gqa_mode(layers[index], self.config.gqa))
            if len(kept) < layers[index].num_attention_heads:
                plan.heads[index] = kept
        for index, count in neuron_keep.items():
            if count < layers[index].intermediate_size:
                order = sorted(range(len(scores.neuron_scores[index])), key=lambda n: (-scores.neuron_scores[index][n], n))
                plan.neurons[index] = sorted(order[:count])
        return plan

    def select(self, model, scores: Scores, target: PruningTarget) -> PruningPlan:
        return self.plan_for(model, scores, self.final_widths(model, target))

    def prune(self, model, data, target, *, batch_size=1, progress=True, between_shots=None) -> PruningResult:
        """K shots: each moves every width a `1 / (shots left)` of the way to its target, re-scoring in between.

        `between_shots(model, shot)`, when given, runs after every shot but the last and returns the model the next
        shot scores (TransAct's reference trains there; `hf-prune prune --heal-tokens-per-shot` heals there).
        """
        source = as_layer_source(model).to_pruned()
        final = self.final_widths(source, target)
        first_scores, shots = None, []
        for shot in range(1, self.shots + 1):
            scores = self.score(source, data, target, batch_size=batch_size, progress=progress)
            first_scores = first_scores or scores
            widths = _step_widths(source, final, self.shots - shot + 1, self.config)
            plan = self.plan_for(source, scores, widths)
            shots.append(plan.to_dict())
            source = source.apply_plan(plan)
            if between_shots is not None and shot < self.shots:
                source = as_layer_source(between_shots(source.unwrap(), shot))
        result_scores = Scores(
            self.config.method,
            head_scores=first_scores.head_scores,
            kv_group_scores=first_scores.kv_group_scores,
            neuron_scores=first_scores.neuron_scores,
            extra={**first_scores.extra, "shots": self.shots, "shot_plans": shots},
        )
        return PruningResult(source.unwrap(), result_scores, source.pruning_trace.to_plan())


def _ranges(indices: list[int]) -> str:
    """`[0, 1, 2, 5]` -> `"0-2, 5"`."""
    spans, start = [], None
    for position, index in enumerate(indices):
        start = index if start is None else start
        if position + 1 == len(indices) or indices[position + 1] != index + 1:
            spans.append(f"{start}-{index}" if index > start else str(index))
            start = None
    return ", ".join(spans)


def _kept_heads(layer, config: WidthConfig, ratio: float | None) -> int | None:
    """Query heads to keep in a layer, rounded to what GQA allows (whole groups, or whole rows of groups)."""
    heads, groups = layer.num_attention_heads, layer.num_key_value_heads
    group_size = heads // groups
    if config.attention_width is not None:
        wanted = min(config.attention_width, heads)
    elif ratio is not None:
        wanted = (1 - ratio) * heads
    else:
        return None
    unit = group_size if gqa_mode(layer, config.gqa) == "groups" else groups
    return max(1, round(wanted / unit)) * unit


def _step(current: int, target: int, shots_left: int) -> int:
    """TransAct's schedule: move `(current - target) // shots_left` of the way (the last shot lands on target)."""
    return current - (current - target) // shots_left if current > target else current


def _step_widths(source: LayerSource, final: Widths, shots_left: int, config: MLPWidthConfig) -> Widths:
    """This shot's widths. Attention moves in GQA units (whole groups, or one head per group) so every step is
    valid; adaptive allocation moves the totals, which the layers then share by score."""
    layers = source.layer_configs
    step = Widths(source_heads=final.source_heads, source_neurons=final.source_neurons)
    for index, target in final.heads.items():
        unit = _head_unit(layers[index], gqa_mode(layers[index], config.gqa))
        step.heads[index] = _step(layers[index].num_attention_heads // unit, target // unit, shots_left) * unit
    for index, target in final.neurons.items():
        step.neurons[index] = _step(layers[index].intermediate_size, target, shots_left)
    if config.allocation == "adaptive":
        if final.heads:
            first = layers[next(iter(final.heads))]
            unit = _head_unit(first, gqa_mode(first, config.gqa))
            current = sum(layers[index].num_attention_heads for index in final.heads) // unit
            step.head_budget = _step(current, final.budget("heads") // unit, shots_left) * unit
        current = sum(layers[index].intermediate_size for index in final.neurons)
        step.neuron_budget = _step(current, final.budget("neurons"), shots_left)
    return step


def gqa_mode(layer, gqa: str) -> str:
    """How a layer's attention shrinks: as asked, except that a layer with a single KV head (Gemma-3-270m) prunes
    query heads within its group, since removing its only group would remove all its attention.

    Example:

    ```python
    >>> from types import SimpleNamespace
    >>> gqa_mode(SimpleNamespace(num_key_value_heads=1), "groups"), gqa_mode(SimpleNamespace(num_key_value_heads=2), "groups")
    ('heads', 'groups')

    ```
    """
    return "heads" if gqa == "groups" and layer.num_key_value_heads == 1 else gqa


def _head_unit(layer, gqa: str) -> int:
    """Query heads removed together: a whole group (`groups`), or one head from every group (`heads`)."""
    return layer.num_attention_heads // layer.num_key_value_heads if gqa == "groups" else layer.num_key_value_heads


def group_scores(model: PreTrainedModel | LayerSource, head_scores: list[list[float] | None]) -> list[list[float] | None]:
    """A KV group's score: the sum of its query heads' scores."""
    result = []
    for layer, heads in zip(as_layer_source(model).layer_configs, head_scores):
        if heads is None:
            result.append(None)
            continue
        size = layer.num_attention_heads // layer.num_key_value_heads
        result.append([sum(heads[g * size : (g + 1) * size]) for g in range(layer.num_key_value_heads)])
    return result


def _keep_heads(layer, head_scores: list[float], count: int, gqa: str) -> list[int]:
    """The `count` best query heads of a layer that keep every KV group even."""
    heads, groups = layer.num_attention_heads, layer.num_key_value_heads
    size = heads // groups
    if gqa == "groups":
        group = [sum(head_scores[g * size : (g + 1) * size]) for g in range(groups)]
        keep_groups = sorted(sorted(range(groups), key=lambda g: (-group[g], g))[: max(1, count // size)])
        return [g * size + i for g in keep_groups for i in range(size)]
    per_group = max(1, count // groups)
    kept = []
    for g in range(groups):
        members = list(range(g * size, (g + 1) * size))
        kept += sorted(sorted(members, key=lambda h: (-head_scores[h], h))[:per_group])
    return kept


def _adaptive_keep(
    unit_scores: dict[int, list[float]], budget: int, min_keep: float, source_units: dict[int, int] | None = None
) -> dict[int, int]:
    """Units to keep per layer when all layers' units compete for `budget`.

    Scores are divided by their layer's mean, so a unit competes by how it compares with its own layer (raw
    activation scales differ from layer to layer). Every layer keeps at least `min_keep` of its units in the source
    model (`source_units`; its current units when not given), and one.
    """
    candidates, keep = [], {}
    source_units = source_units or {}
    for index, scores in unit_scores.items():
        values = torch.tensor(scores, dtype=torch.float64)
        normalised = values / values.mean().clamp_min(1e-30)
        keep[index] = len(scores)
        floor = min(len(scores), max(1, math.ceil(min_keep * source_units.get(index, len(scores)))))
        order = normalised.argsort().tolist()
        candidates += [(normalised[unit].item(), index) for unit in order[: len(scores) - floor]]
    excess = sum(keep.values()) - budget
    for _, index in sorted(candidates)[: max(excess, 0)]:
        keep[index] -= 1
    return keep


def _adaptive_head_keep(layers, scores: Scores, widths: Widths, config: WidthConfig) -> dict[int, int]:
    """Adaptive allocation of attention in GQA units: a whole KV group, or one head from every group."""
    if not widths.heads:
        return {}
    unit_scores, unit_size = {}, None
    for index in widths.heads:
        layer = layers[index]
        size = layer.num_attention_heads // layer.num_key_value_heads
        head = scores.head_scores[index]
        groups = [head[g * size : (g + 1) * size] for g in range(layer.num_key_value_heads)]
        if gqa_mode(layer, config.gqa) == "groups":
            unit_scores[index] = [sum(group) for group in groups]
        else:
            # Unit k: the k-th best head of every group, scored by their sum.
            ranked = [sorted(group, reverse=True) for group in groups]
            unit_scores[index] = [sum(r[k] for r in ranked) for k in range(size)]
        unit_size = _head_unit(layer, gqa_mode(layer, config.gqa))
    source_units = {index: heads // unit_size for index, heads in widths.source_heads.items()}
    kept = _adaptive_keep(unit_scores, widths.budget("heads") // unit_size, config.min_keep, source_units)
    return {index: units * unit_size for index, units in kept.items()}
