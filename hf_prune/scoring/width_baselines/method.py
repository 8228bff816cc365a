"""Width baselines: weight magnitude, activation norm, Wanda-sp, random."""

from __future__ import annotations

import torch

from ...calibration.engine import collect
from ..base import Scores
from ..width import ChannelEnergy, WidthMethod


def _per_head(values: torch.Tensor, head_dim: int) -> torch.Tensor:
    return values.view(-1, head_dim)


class Magnitude(WidthMethod):
    """See `MagnitudeConfig`."""

    def score_structures(self, source, data, *, batch_size, progress) -> Scores:
        heads, neurons = [], []
        for _, layer in source.layers():
            attention = layer.self_attn
            if attention is None:
                heads.append(None)
            else:
                d = attention.head_dim
                q = attention.q_proj.weight.detach().double().pow(2).view(-1, d, attention.q_proj.in_features).sum((1, 2))
                o = attention.o_proj.weight.detach().double().pow(2).view(attention.o_proj.out_features, -1, d).sum((0, 2))
                heads.append((q + o).sqrt().tolist())
            mlp = layer.mlp
            if mlp is None:
                neurons.append(None)
            else:
                energy = mlp.gate_proj.weight.detach().double().pow(2).sum(1) + mlp.up_proj.weight.detach().double().pow(2).sum(1)
                energy += mlp.down_proj.weight.detach().double().pow(2).sum(0)
                neurons.append(energy.sqrt().tolist())
        return Scores(self.config.method, head_scores=heads, neuron_scores=neurons)


class Activation(WidthMethod):
    """See `ActivationConfig`."""

    def score_structures(self, source, data, *, batch_size, progress) -> Scores:
        energy = ChannelEnergy()
        collect(source, data, [energy], batch_size=batch_size, progress=progress, description="activation")
        heads, neurons = [], []
        for index, layer in enumerate(source.layer_configs):
            attention = energy.norms(f"attn.{index}")
            heads.append(_per_head(attention, layer.head_dim).mean(1).tolist() if attention is not None else None)
            mlp = energy.norms(f"mlp.{index}")
            neurons.append(mlp.tolist() if mlp is not None else None)
        return Scores(self.config.method, head_scores=heads, neuron_scores=neurons)


class WandaSP(WidthMethod):
    """See `WandaSPConfig`."""

    def score_structures(self, source, data, *, batch_size, progress) -> Scores:
        energy = ChannelEnergy()
        collect(source, data, [energy], batch_size=batch_size, progress=progress, description="wanda-sp")
        heads, neurons = [], []
        for index, layer in source.layers():
            attention = energy.norms(f"attn.{index}")
            if attention is None:
                heads.append(None)
            else:
                column_mass = layer.self_attn.o_proj.weight.detach().double().abs().sum(0).cpu()
                heads.append(_per_head(column_mass * attention, layer.self_attn.head_dim).sum(1).tolist())
            mlp = energy.norms(f"mlp.{index}")
            if mlp is None:
                neurons.append(None)
            else:
                neurons.append((layer.mlp.down_proj.weight.detach().double().abs().sum(0).cpu() * mlp).tolist())
        return Scores(self.config.method, head_scores=heads, neuron_scores=neurons)


class RandomWidth(WidthMethod):
    """See `RandomWidthConfig`."""

    def score_structures(self, source, data, *, batch_size, progress) -> Scores:
        generator = torch.Generator().manual_seed(self.config.seed)
        heads, neurons = [], []
        for layer in source.layer_configs:
            skip = set(getattr(layer, "skip", None) or ())
            heads.append(None if "self_attn" in skip else torch.rand(layer.num_attention_heads, generator=generator, dtype=torch.float64).tolist())
            neurons.append(None if "mlp" in skip else torch.rand(layer.intermediate_size, generator=generator, dtype=torch.float64).tolist())
        return Scores(self.config.method, head_scores=heads, neuron_scores=neurons, extra={"seed": self.config.seed})
