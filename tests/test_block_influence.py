"""Block Influence equals a straightforward computation; its variants and the depth baselines behave."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hf_prune
from hf_prune.calibration import CalibrationData
from hf_prune.scoring import PruningTarget, get_method
from tests.conftest import make_tiny_model


@pytest.fixture
def data() -> CalibrationData:
    generator = torch.Generator().manual_seed(0)
    return CalibrationData(torch.randint(1, 96, (6, 12), generator=generator), "random tokens")


def layer_states(model, input_ids: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every decoder layer's input and output hidden states, stored in full (the naive way)."""
    states = []
    hooks = [
        layer.register_forward_hook(
            lambda module, args, kwargs, output: states.append(
                (args[0].double().numpy().reshape(-1, args[0].shape[-1]), output.double().numpy().reshape(-1, output.shape[-1]))
            ),
            with_kwargs=True,
        )
        for layer in model.model.layers
    ]
    with torch.no_grad():
        for window in input_ids:
            model(window[None])
    for hook in hooks:
        hook.remove()
    num_layers = len(model.model.layers)
    return [
        (np.concatenate([states[w * num_layers + i][0] for w in range(len(input_ids))]),
         np.concatenate([states[w * num_layers + i][1] for w in range(len(input_ids))]))
        for i in range(num_layers)
    ]


def naive_cosines(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.array([a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(before, after)])


def test_block_influence_equals_a_straightforward_computation(tiny_model, data):
    model = hf_prune.to_pruned(tiny_model)
    scores = get_method("block-influence").score(model, data, batch_size=4, progress=False)
    expected = [1 - naive_cosines(before, after).mean() for before, after in layer_states(model, data.input_ids)]
    np.testing.assert_allclose(scores.layer_scores, expected, rtol=1e-10, atol=1e-12)


def test_angular_metric_and_contiguous_block_distances(data):
    model = hf_prune.to_pruned(make_tiny_model("llama"))
    states = layer_states(model, data.input_ids)
    angular = get_method("block-influence", metric="angular").score(model, data, progress=False)
    expected = [np.mean(np.arccos(np.clip(naive_cosines(b, a), -1, 1)) / math.pi) for b, a in states]
    np.testing.assert_allclose(angular.layer_scores, expected, rtol=1e-9)

    method = get_method("block-influence", contiguous=True)
    target = PruningTarget(num_layers=2)
    scores = method.score(model, data, target, batch_size=4, progress=False)
    boundaries = [states[0][0]] + [after for _, after in states]  # h_0 .. h_L
    expected_blocks = [
        np.mean(np.arccos(np.clip(naive_cosines(boundaries[i], boundaries[i + 2]), -1, 1)) / math.pi) for i in range(3)
    ]
    np.testing.assert_allclose(scores.extra["block_scores"], expected_blocks, rtol=1e-9)
    start = int(np.argmin(expected_blocks))
    assert method.select(model, scores, target).removed_layers == [start, start + 1]


def test_hooks_see_the_last_layer_before_the_final_norm(data):
    """The reference code uses output_hidden_states, whose last entry is normalised: the last layer differs."""
    model = make_tiny_model("llama")
    scores = get_method("block-influence").score(model, data, progress=False)
    with torch.no_grad():
        hidden = model(data.input_ids, output_hidden_states=True).hidden_states
    def reference(i):
        a, b = hidden[i].double().reshape(-1, 48).numpy(), hidden[i + 1].double().reshape(-1, 48).numpy()
        return 1 - naive_cosines(a, b).mean()
    np.testing.assert_allclose(scores.layer_scores[:3], [reference(i) for i in range(3)], rtol=1e-6)
    assert abs(scores.layer_scores[3] - reference(3)) > 1e-3


def test_one_shot_removes_the_lowest_scores(tiny_model, data):
    method = get_method("block-influence")
    result = method.prune(tiny_model, data, PruningTarget(num_layers=2), progress=False)
    lowest_two = sorted(np.argsort(result.scores.layer_scores, kind="stable")[:2].tolist())
    assert result.plan.removed_layers == lowest_two
    assert result.model.config.num_hidden_layers == 2
    assert result.model.pruning_trace.removed_layers == lowest_two


def test_iterative_rescoring_removes_one_layer_per_round(data):
    model = make_tiny_model("llama")
    result = get_method("block-influence", iterative=True).prune(
        model, data, PruningTarget(num_layers=2), progress=False
    )
    order = result.scores.extra["removal_order"]
    first_round = result.scores.extra["round_scores"][0]
    assert order[0] == int(np.argmin(first_round))
    second_round = result.scores.extra["round_scores"][1]
    assert second_round[order[0]] is None
    remaining = [(score, i) for i, score in enumerate(second_round) if score is not None]
    assert order[1] == min(remaining)[1]
    assert sorted(order) == result.model.pruning_trace.removed_layers


def test_depth_baselines():
    model = make_tiny_model("llama")
    last = get_method("last-layers")
    plan = last.select(model, last.score(model, None), PruningTarget(num_layers=2))
    assert plan.removed_layers == [2, 3]
    random_a = get_method("random-layers", seed=0)
    random_b = get_method("random-layers", seed=0)
    target = PruningTarget(ratio=0.5)
    plan_a = random_a.select(model, random_a.score(model, None), target)
    assert plan_a.removed_layers == random_b.select(model, random_b.score(model, None), target).removed_layers
    assert len(plan_a.removed_layers) == 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (dict(ratio=1.0), "ratio must be strictly between 0 and 1"),
        (dict(ratio=0.0), "ratio must be strictly between 0 and 1"),
        (dict(num_layers=0), "at least 1"),
        (dict(), "exactly one of"),
    ],
)
def test_bad_targets(target, message):
    with pytest.raises(hf_prune.InvalidPruningError, match=message):
        PruningTarget(**target)


def test_removing_every_layer_is_refused():
    with pytest.raises(hf_prune.InvalidPruningError, match="cannot remove 4 of 4 layers"):
        PruningTarget(num_layers=4).layers_to_remove(4)
