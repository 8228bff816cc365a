"""Block Influence: layer similarity statistics, one-shot / iterative / contiguous-block selection."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel

from ...calibration.data import CalibrationData
from ...calibration.engine import Statistic, collect, decoder_layers, tokens_of
from ...checkpoint.layer_source import LayerSource, as_layer_source
from ...surgery import PruningPlan
from ..base import PruningMethod, PruningResult, PruningTarget, Scores
from ..selection import lowest, remove_lowest_layers
from .config import BlockInfluenceConfig


class LayerSimilarity(Statistic):
    """Per decoder layer: sums over tokens of `cos(h_in, h_out)` and of the angular distance, and the token count.

    With `block_size=n` it also sums the angular distance between `h_i` and `h_{i+n}` for every start `i` (the
    hidden states at layer boundaries of the current batch are kept only until no pair needs them).
    """

    def __init__(self, block_size: int | None = None) -> None:
        super().__init__()
        self.block_size = block_size
        self._boundaries: dict[int, dict[int, torch.Tensor]] = {}

    def targets(self, model: PreTrainedModel) -> dict[str, nn.Module]:
        layers = decoder_layers(model)
        self.num_layers = len(layers)
        return {str(index): layer for index, layer in enumerate(layers)}

    def update(self, key, inputs, output, mask, batch_index) -> None:
        index = int(key)
        before, after = tokens_of(inputs, mask), tokens_of(output, mask)
        cosine = torch.nn.functional.cosine_similarity(before, after, dim=-1, eps=1e-30)
        self._add_at("cosine", index, cosine.sum())
        self._add_at("angular", index, angular(cosine).sum())
        self._add_at("tokens", index, torch.tensor(float(cosine.numel())))
        if self.block_size is not None:
            self._track_boundaries(index, before, after, batch_index)

    def _add_at(self, name: str, index: int, value: torch.Tensor, size: int | None = None) -> None:
        vector = torch.zeros(size or self.num_layers, dtype=torch.float64)
        vector[index] = value
        self.add(name, vector)

    def _track_boundaries(self, index: int, before: torch.Tensor, after: torch.Tensor, batch_index: int) -> None:
        """Sum the distance between boundary `index + 1 - n` and this layer's output, then forget the former."""
        states = self._boundaries.setdefault(batch_index, {})
        states.setdefault(index, before)
        states[index + 1] = after
        start = index + 1 - self.block_size
        if start < 0:
            return
        distance = angular(torch.nn.functional.cosine_similarity(states.pop(start), after, dim=-1, eps=1e-30))
        self._add_at("block_angular", start, distance.sum(), size=self.num_layers - self.block_size + 1)
        self._add_at("block_tokens", start, torch.tensor(float(distance.numel())), size=self.num_layers - self.block_size + 1)

    def finish_batch(self, batch_index: int) -> None:
        self._boundaries.pop(batch_index, None)

    def layer_scores(self, metric: str) -> list[float]:
        tokens = self.sums["tokens"]
        if metric == "cosine":
            return (1.0 - self.sums["cosine"] / tokens).tolist()
        return (self.sums["angular"] / tokens).tolist()

    def block_scores(self) -> list[float]:
        return (self.sums["block_angular"] / self.sums["block_tokens"]).tolist()


def angular(cosine: torch.Tensor) -> torch.Tensor:
    """Angular distance in [0, 1] from a cosine similarity."""
    return torch.arccos(cosine.clamp(-1.0, 1.0)) / math.pi


class BlockInfluence(PruningMethod):
    """See `BlockInfluenceConfig`."""

    config: BlockInfluenceConfig

    def score(self, model, data, target=None, *, batch_size=1, progress=True) -> Scores:
        block_size = None
        if self.config.contiguous:
            if target is None:
                raise ValueError("the contiguous variant needs the number of layers to remove")
            block_size = target.layers_to_remove(model.config.num_hidden_layers)
        statistic = LayerSimilarity(block_size)
        collect(model, data, [statistic], batch_size=batch_size, progress=progress, description="block influence")
        scores = Scores(self.config.method, layer_scores=statistic.layer_scores(self.config.metric))
        scores.extra["metric"] = self.config.metric
        if block_size is not None:
            scores.extra["block_size"] = block_size
            scores.extra["block_scores"] = statistic.block_scores()
        return scores

    def select(self, model, scores: Scores, target: PruningTarget) -> PruningPlan:
        count = target.layers_to_remove(len(scores.layer_scores))
        if self.config.contiguous:
            start = lowest(scores.extra["block_scores"], 1)[0]
            return PruningPlan(removed_layers=list(range(start, start + count)))
        return remove_lowest_layers(scores.layer_scores, count)

    def prune(self, model, data, target, *, batch_size=1, progress=True) -> PruningResult:
        if not self.config.iterative:
            return super().prune(model, data, target, batch_size=batch_size, progress=progress)
        return self._prune_iteratively(model, data, target, batch_size=batch_size, progress=progress)

    def _prune_iteratively(
        self, model: PreTrainedModel | LayerSource, data: CalibrationData, target: PruningTarget, *, batch_size: int,
        progress: bool,
    ) -> PruningResult:
        """Remove the lowest-scoring layer, re-score what is left, repeat; scores are kept per round."""
        source = as_layer_source(model)
        count = target.layers_to_remove(model.config.num_hidden_layers)
        source_layers = list(range(model.config.num_hidden_layers))
        rounds, removed, first = [], [], None
        for _ in range(count):
            scores = self.score(source, data, batch_size=batch_size, progress=progress)
            first = first or scores
            victim = lowest(scores.layer_scores, 1)[0]
            per_source = [None] * len(first.layer_scores)
            for position, source_layer in enumerate(source_layers):
                per_source[source_layer] = scores.layer_scores[position]
            rounds.append(per_source)
            removed.append(source_layers.pop(victim))
            source = source.apply_plan(PruningPlan(removed_layers=[victim]))
        result = Scores(self.config.method, layer_scores=first.layer_scores, extra=dict(first.extra))
        result.extra.update(iterative=True, removal_order=removed, round_scores=rounds)
        return PruningResult(source.unwrap(), result, PruningPlan(removed_layers=removed))
