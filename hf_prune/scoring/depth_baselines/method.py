"""Depth baselines. Their "scores" only encode the order in which they remove layers (lowest first)."""

from __future__ import annotations

import torch

from ...surgery import PruningPlan
from ..base import PruningMethod, PruningTarget, Scores
from ..selection import remove_lowest_layers


class _DepthBaseline(PruningMethod):
    def select(self, model, scores: Scores, target: PruningTarget) -> PruningPlan:
        return remove_lowest_layers(scores.layer_scores, target.layers_to_remove(len(scores.layer_scores)))


class LastLayers(_DepthBaseline):
    """See `LastLayersConfig`: layer i scores `num_layers - i`, so the last layers go first."""

    def score(self, model, data=None, target=None, *, batch_size=1, progress=True) -> Scores:
        num_layers = model.config.num_hidden_layers
        return Scores(self.config.method, layer_scores=[float(num_layers - index) for index in range(num_layers)])


class RandomLayers(_DepthBaseline):
    """See `RandomLayersConfig`: a seeded random permutation is the removal order."""

    def score(self, model, data=None, target=None, *, batch_size=1, progress=True) -> Scores:
        generator = torch.Generator().manual_seed(self.config.seed)
        order = torch.rand(model.config.num_hidden_layers, generator=generator, dtype=torch.float64)
        return Scores(self.config.method, layer_scores=order.tolist(), extra={"seed": self.config.seed})
