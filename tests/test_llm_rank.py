"""LLM-Rank: the PageRank sweep by hand, gamma = 0 as activation scoring, exact removal of dead neurons."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import hf_prune
from hf_prune.calibration import CalibrationData
from hf_prune.scoring import PruningTarget, get_method, get_method_config
from hf_prune.scoring.llm_rank import pagerank_chain, pagerank_step
from tests.conftest import make_tiny_model


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# A 3-linear chain: 2 inputs -> 3 -> 2 -> 2. Worked by hand (theta 0.5, gamma 0.9):
#   p0 = [1, 3] / 4 = [0.25, 0.75]
#   W1 colsums |W| = [2, 3], nonzeros = [2, 2]  =>  M1 = [[.5, 0], [.5, 5/12], [0, 7/12]]
#   M1 p0 = [0.125, 0.4375, 0.4375];  a_out1 / sum = [.25, .25, .5]
#   I1 = .9 M1 p0 + .1 a_out1 = [0.1375, 0.41875, 0.44375]
#   W2: M2 = [[1, 0, .5], [0, 1, .5]]  =>  M2 I1 = [0.359375, 0.640625];  a_out2 = [.75, .25]
#   I2 = [0.3984375, 0.6015625]
#   W3: colsums [1, 4], nonzeros [1, 2]  =>  M3 = [[1, .375], [0, .625]];  M3 I2 = [0.6240234375, 0.3759765625]
#   I3 = .9 M3 I2 + .1 [.5, .5] = [0.61162109375, 0.38837890625]
W1 = t([[1, 0], [1, 1], [0, 2]])
W2 = t([[2, 0, 1], [0, 1, 1]])
W3 = t([[1, 1], [0, 3]])
A_IN = t([1, 3])
A_OUT = [t([1, 1, 2]), t([3, 1]), t([1, 1])]


def test_weighted_pagerank_on_a_hand_made_graph():
    importances = pagerank_chain([W1, W2, W3], A_IN, A_OUT, variant="wpr", gamma=0.9, theta=0.5)
    expected = [[0.1375, 0.41875, 0.44375], [0.3984375, 0.6015625], [0.61162109375, 0.38837890625]]
    for got, want in zip(importances, expected):
        torch.testing.assert_close(got, t(want), rtol=0, atol=1e-15)


def test_modified_pagerank_on_a_hand_made_graph():
    # MPR: I = (|W| p) * a_out, normalised.  |W1| p0 = [.25, 1, 1.5]; times [1, 1, 2] = [.25, 1, 3] / 4.25
    first = pagerank_step(W1, t([0.25, 0.75]), A_OUT[0], variant="mpr", gamma=0.9, theta=0.5)
    torch.testing.assert_close(first, t([0.25, 1.0, 3.0]) / 4.25)
    # Next: |W2| I1 = [2 * .25 + 3 / 4.25, 1 / 4.25 + 3 / 4.25] / ..., times a_out2 = [3, 1]
    second = pagerank_step(W2, first, A_OUT[1], variant="mpr", gamma=0.9, theta=0.5)
    raw = t([(2 * 0.25 + 3.0) / 4.25 * 3, (1.0 + 3.0) / 4.25 * 1])
    torch.testing.assert_close(second, raw / raw.sum())


@pytest.fixture
def data() -> CalibrationData:
    generator = torch.Generator().manual_seed(2)
    return CalibrationData(torch.randint(1, 96, (5, 12), generator=generator), "random tokens")


def up_output_norms(model, data: CalibrationData) -> list[torch.Tensor]:
    """Activation scoring computed directly: the L2 norm over tokens of every up_proj output neuron."""
    outputs = {i: [] for i in range(len(model.model.layers))}
    hooks = [
        layer.mlp.up_proj.register_forward_hook(lambda m, a, out, i=i: outputs[i].append(out.detach().double()))
        for i, layer in enumerate(model.model.layers)
    ]
    with torch.no_grad():
        model(data.input_ids)
    for hook in hooks:
        hook.remove()
    return [torch.cat(outputs[i]).reshape(-1, outputs[i][0].shape[-1]).norm(dim=0) for i in outputs]


def test_gamma_zero_is_activation_scoring(family, data):
    model = make_tiny_model(family)
    scores = get_method("llm-rank", gamma=0.0).score(model, data, progress=False)
    for layer_scores, norms in zip(scores.neuron_scores, up_output_norms(model, data)):
        torch.testing.assert_close(t(layer_scores), norms / norms.sum(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"variant": "mpr"}, {"chained": True}, {"gate": "product"}])
def test_dead_neurons_rank_lowest_in_every_variant(family, data, options):
    """A neuron whose up_proj row is zero has no edges and no activation: every variant scores it 0."""
    model = make_tiny_model(family)
    dead = {0: [1, 2, 30], 2: [5, 63]}
    with torch.no_grad():
        for layer, neurons in dead.items():
            model.model.layers[layer].mlp.up_proj.weight[neurons] = 0
            if model.model.layers[layer].mlp.up_proj.bias is not None:
                model.model.layers[layer].mlp.up_proj.bias[neurons] = 0
    result = get_method("llm-rank", mlp_width=61, **options).prune(model, data, None, progress=False)
    for layer, neurons in dead.items():
        assert all(result.scores.neuron_scores[layer][n] == 0 for n in neurons)
        assert set(neurons) <= set(range(64)) - set(result.model.pruning_trace.layers[layer].neurons)


def test_removing_dead_neurons_leaves_logits_unchanged(data):
    model = make_tiny_model("llama")
    with torch.no_grad():
        for layer in range(4):
            model.model.layers[layer].mlp.up_proj.weight[[7, 8, 9]] = 0
            model.model.layers[layer].mlp.up_proj.bias[[7, 8, 9]] = 0
        before = model(data.input_ids).logits
    result = get_method("llm-rank", mlp_width=61).prune(model, data, None, progress=False)
    assert all(sorted(set(range(64)) - set(layer.neurons)) == [7, 8, 9] for layer in result.model.pruning_trace.layers)
    with torch.no_grad():
        assert (result.model(data.input_ids).logits - before).abs().max() <= 1e-5


def test_uniform_pruning_writes_a_stock_checkpoint_and_global_a_pruned_one(data, tmp_path):
    model = make_tiny_model("qwen2")
    uniform = get_method("llm-rank").prune(model, data, PruningTarget(ratio=0.25), progress=False)
    record = hf_prune.save_pruned(uniform.model, tmp_path / "uniform")
    assert record.format == "stock" and record.width_kept["mlp"] == 0.75 and record.width_kept["attention"] == 1.0
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "uniform")
    assert loaded.config.intermediate_size == 48
    global_ = get_method("llm-rank", allocation="adaptive").prune(
        model, data, PruningTarget(ratio=0.25), progress=False
    )
    record = hf_prune.save_pruned(global_.model, tmp_path / "global")
    assert record.format == "pruned"
    sizes = [layer["intermediate_size"] for layer in record.per_layer]
    assert sum(sizes) == 4 * 48 and len(set(sizes)) > 1
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "global")
    with torch.no_grad():
        assert torch.equal(reloaded(data.input_ids).logits, global_.model(data.input_ids).logits)


def test_llm_rank_never_touches_attention(data):
    result = get_method("llm-rank").prune(make_tiny_model("llama"), data, PruningTarget(ratio=0.5), progress=False)
    assert all(layer.num_attention_heads == 6 for layer in result.model.config.per_layer_config)
    with pytest.raises(hf_prune.InvalidPruningError, match="has no option attention_ratio"):
        get_method_config("llm-rank", attention_ratio=0.5)
