"""TransAct: channel salience of transitional activations, head salience, the K-shot schedule, head-dim pruning."""

from __future__ import annotations

import torch

from ...calibration.engine import collect
from ...checkpoint.layer_source import as_layer_source
from ...surgery import PruningPlan
from ..base import PruningResult, Scores
from ..width import ChannelEnergy, WidthMethod
from .config import TransActConfig


def head_salience(channel_salience: torch.Tensor, head_dim: int) -> list[float]:
    """`mean + (10 / d) * max` of each head's `d` channel saliences (TransAct's head score)."""
    per_head = channel_salience.view(-1, head_dim)
    return (per_head.mean(dim=1) + (10.0 / head_dim) * per_head.max(dim=1).values).tolist()


class TransAct(WidthMethod):
    """See `TransActConfig`."""

    config: TransActConfig

    @property
    def shots(self) -> int:
        return self.config.shots

    def score_structures(self, source, data, *, batch_size, progress) -> Scores:
        energy = ChannelEnergy()
        collect(source, data, [energy], batch_size=batch_size, progress=progress, description="transact")
        heads, neurons = [], []
        for index, layer in enumerate(source.layer_configs):
            attention = energy.norms(f"attn.{index}")
            heads.append(head_salience(attention, layer.head_dim) if attention is not None else None)
            mlp = energy.norms(f"mlp.{index}")
            neurons.append(mlp.tolist() if mlp is not None else None)
        return Scores(self.config.method, head_scores=heads, neuron_scores=neurons)

    def prune(self, model, data, target, *, batch_size=1, progress=True, between_shots=None) -> PruningResult:
        result = super().prune(model, data, target, batch_size=batch_size, progress=progress, between_shots=between_shots)
        if self.config.head_dim_ratio is None:
            return result
        pruned = narrow_heads(result.model, data, self.config.head_dim_ratio, batch_size=batch_size, progress=progress)
        return PruningResult(pruned, result.scores, as_layer_source(pruned).pruning_trace.to_plan())


def narrow_heads(model, data, ratio: float, *, batch_size: int = 1, progress: bool = True):
    """Remove `ratio` of every layer's rotary pairs: those whose two output channels carry the least, over all heads."""
    source = as_layer_source(model).to_pruned()
    energy = ChannelEnergy(mlp=False)
    collect(source, data, [energy], batch_size=batch_size, progress=progress, description="transact head dims")
    plan = PruningPlan()
    for index, layer in enumerate(source.layer_configs):
        attention = energy.norms(f"attn.{index}")
        if attention is None:
            continue
        head_dim = layer.head_dim
        half = head_dim // 2
        per_channel = attention.view(-1, head_dim).sum(dim=0)
        pair_scores = (per_channel[:half] + per_channel[half:]).tolist()
        keep = max(1, round((1 - ratio) * half))
        plan.rotary_pairs[index] = sorted(sorted(range(half), key=lambda p: (-pair_scores[p], p))[:keep])
    return source.apply_plan(plan).unwrap()
