"""LLM-Rank: input/output norms of the MLP linears, the PageRank sweep along the chain, neuron scores."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from ...calibration.engine import Statistic, collect, tokens_of
from ..base import Scores
from ..width import WidthMethod
from .config import LLMRankConfig


class LinearNorms(Statistic):
    """Per MLP linear: the sum over tokens of the square of every input and every output neuron."""

    def __init__(self, linears: Sequence[str] = ("up_proj", "down_proj")) -> None:
        super().__init__()
        self.linears = tuple(linears)

    def targets(self, model: PreTrainedModel) -> dict[str, nn.Module]:
        return {
            f"{index}.{name}": getattr(layer.mlp, name)
            for index, layer in enumerate(model.base_model.layers)
            if layer.mlp is not None
            for name in self.linears
        }

    def update(self, key, inputs, output, mask, batch_index) -> None:
        self.add(f"{key}.in", tokens_of(inputs, mask).pow(2).sum(0))
        self.add(f"{key}.out", tokens_of(output, mask).pow(2).sum(0))

    def norms(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`(a_in, a_out)`: L2 norms over tokens of the linear's input and output neurons."""
        return self.sums[f"{key}.in"].sqrt(), self.sums[f"{key}.out"].sqrt()


def _normalised(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.sum().clamp_min(1e-300)


def pagerank_step(
    weight: torch.Tensor, p: torch.Tensor, a_out: torch.Tensor, *, variant: str, gamma: float, theta: float
) -> torch.Tensor:
    """Importance of a linear's output neurons from its input neurons' importance `p` (one step of the sweep).

    `weight` is `(outputs, inputs)`; edge input j -> output i weighs `|W_ij|`. Returns a distribution (sums to 1).

    Example:

    ```python
    >>> w = torch.tensor([[1.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    >>> pagerank_step(w, torch.tensor([0.5, 0.5]).double(), torch.ones(2).double(), variant="mpr", gamma=0, theta=0)
    tensor([0.2500, 0.7500], dtype=torch.float64)

    ```
    """
    magnitude = weight.detach().to(torch.float64).abs()
    p = p.to(torch.float64)
    a_out = a_out.to(torch.float64)
    if variant == "mpr":
        return _normalised((magnitude @ p) * a_out)
    weighted = magnitude / magnitude.sum(dim=0, keepdim=True).clamp_min(1e-300)
    present = (magnitude != 0).to(torch.float64)
    unweighted = present / present.sum(dim=0, keepdim=True).clamp_min(1.0)
    transition = theta * weighted + (1 - theta) * unweighted
    return _normalised(gamma * (transition @ p) + (1 - gamma) * _normalised(a_out))


def pagerank_chain(
    weights: Sequence[torch.Tensor],
    first_input: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    *,
    variant: str = LLMRankConfig.variant,
    gamma: float = LLMRankConfig.gamma,
    theta: float = LLMRankConfig.theta,
) -> list[torch.Tensor]:
    """One sweep along a chain of linears (a DAG, so no power iteration): each linear's output importance feeds the
    next as its input importance; the first starts from its normalised input norms `first_input`. The defaults are
    `LLMRankConfig`'s, so a call without options scores as `hf-prune prune --method llm-rank` does."""
    importances, p = [], _normalised(first_input.to(torch.float64))
    for weight, a_out in zip(weights, outputs):
        p = pagerank_step(weight, p, a_out, variant=variant, gamma=gamma, theta=theta)
        importances.append(p)
    return importances


class LLMRank(WidthMethod):
    """See `LLMRankConfig`. Prunes MLP neurons only."""

    config: LLMRankConfig

    def score_structures(self, source, data, *, batch_size, progress) -> Scores:
        config = self.config
        linears = ("gate_proj", "up_proj", "down_proj") if config.gate == "product" else ("up_proj", "down_proj")
        norms = LinearNorms(linears)
        collect(source, data, [norms], batch_size=batch_size, progress=progress, description="llm-rank")
        options = {"variant": config.variant, "gamma": config.gamma, "theta": config.theta}
        neurons, carried = [], None
        for index, layer in source.layers():
            if layer.mlp is None:
                neurons.append(None)
                continue
            up_in, up_out = norms.norms(f"{index}.up_proj")
            _, down_out = norms.norms(f"{index}.down_proj")
            start = carried if (config.chained and carried is not None) else up_in
            up, down = pagerank_chain(
                [layer.mlp.up_proj.weight, layer.mlp.down_proj.weight], start, [up_out, down_out], **options
            )
            score = up
            if config.gate == "product":
                _, gate_out = norms.norms(f"{index}.gate_proj")
                gate = pagerank_step(layer.mlp.gate_proj.weight, _normalised(start.to(torch.float64)), gate_out, **options)
                score = _normalised(up * gate)
            neurons.append(score.tolist())
            carried = down
        return Scores(self.config.method, neuron_scores=neurons, extra={"variant": config.variant, "gamma": config.gamma})
