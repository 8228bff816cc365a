"""Surgery removes exactly what contributes nothing, keeps GQA valid, and re-numbers layers correctly."""

from __future__ import annotations

import copy

import pytest
import torch

import hf_prune
from hf_prune import InvalidPruningError, PruningPlan
from tests.conftest import make_tiny_model, requires_smollm2

TOLERANCE = 1e-5


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids).logits


def attention(model, layer: int):
    return model.model.layers[layer].self_attn


def zero_query_heads(model, layer: int, heads: list[int]) -> None:
    """Make query heads contribute nothing: zero their columns of o_proj."""
    attn = attention(model, layer)
    head_dim = attn.head_dim
    with torch.no_grad():
        for head in heads:
            attn.o_proj.weight[:, head * head_dim : (head + 1) * head_dim] = 0


def zero_neurons(model, layer: int, neurons: list[int]) -> None:
    with torch.no_grad():
        model.model.layers[layer].mlp.down_proj.weight[:, neurons] = 0


def test_removing_a_dead_kv_group_keeps_logits(tiny_model, token_batch):
    # Heads 2 and 3 form KV group 1 (6 heads over 3 KV heads).
    zero_query_heads(tiny_model, 1, [2, 3])
    before = logits(tiny_model, token_batch)
    pruned = hf_prune.remove_kv_groups(tiny_model, {1: [1]})
    assert pruned.model.layers[1].self_attn.num_key_value_heads == 2
    assert pruned.model.layers[1].self_attn.num_heads == 4
    assert pruned.config.per_layer_config[1].num_key_value_heads == 2
    assert (logits(pruned, token_batch) - before).abs().max() <= TOLERANCE


def test_removing_dead_heads_evenly_within_groups_keeps_logits(tiny_model, token_batch):
    # One query head from each of the three groups: groups become 1 query head each.
    zero_query_heads(tiny_model, 2, [1, 2, 5])
    before = logits(tiny_model, token_batch)
    pruned = hf_prune.remove_heads(tiny_model, {2: [1, 2, 5]})
    attn = attention(pruned, 2)
    assert (attn.num_heads, attn.num_key_value_heads, attn.num_key_value_groups) == (3, 3, 1)
    assert pruned.pruning_trace.layers[2].query_heads == [0, 3, 4]
    assert (logits(pruned, token_batch) - before).abs().max() <= TOLERANCE


def test_removing_dead_neurons_keeps_logits(tiny_model, token_batch):
    dead = [0, 7, 8, 33, 63]
    zero_neurons(tiny_model, 0, dead)
    zero_neurons(tiny_model, 3, dead[:2])
    before = logits(tiny_model, token_batch)
    pruned = hf_prune.remove_neurons(tiny_model, {0: dead, 3: dead[:2]})
    assert pruned.model.layers[0].mlp.gate_proj.weight.shape[0] == 64 - len(dead)
    assert pruned.model.layers[0].mlp.down_proj.weight.shape[1] == 64 - len(dead)
    assert pruned.config.per_layer_config[3].intermediate_size == 62
    assert (logits(pruned, token_batch) - before).abs().max() <= TOLERANCE


def test_removing_dead_rotary_pairs_keeps_rope_exact(tiny_model, token_batch):
    # In float64: what remains is the q/k norms' epsilon (about 1e-6 here), not float32's rounding of narrower sums.
    tiny_model = tiny_model.double()
    config = tiny_model.config
    attn = attention(tiny_model, 1)
    head_dim = attn.head_dim
    half = head_dim // 2
    removed_pair = 1
    channels = [removed_pair, removed_pair + half]
    # A dead pair: zero in every query and key head (so per-head q/k norms see zeros) and unread by o_proj.
    with torch.no_grad():
        for projection, heads in ((attn.q_proj, config.num_attention_heads), (attn.k_proj, config.num_key_value_heads)):
            rows = [head * head_dim + c for head in range(heads) for c in channels]
            projection.weight[rows] = 0
            if projection.bias is not None:
                projection.bias[rows] = 0
        attn.o_proj.weight[:, [head * head_dim + c for head in range(config.num_attention_heads) for c in channels]] = 0
    before = logits(tiny_model, token_batch)
    pruned = hf_prune.remove_rotary_pairs(tiny_model, {1: [removed_pair]})
    layer = pruned.config.per_layer_config[1]
    assert layer.head_dim == head_dim - 2
    assert layer.rotary_pairs == [p for p in range(half) if p != removed_pair]
    assert layer.softmax_scale == pytest.approx(attn.scaling)  # the source's (Gemma 3: query_pre_attn_scalar ** -0.5)
    assert (logits(pruned, token_batch) - before).abs().max() <= TOLERANCE


def test_removing_layers_equals_bypassing_them(tiny_model, token_batch):
    removed = [1, 2]
    handles = [
        tiny_model.model.layers[index].register_forward_hook(
            lambda module, args, kwargs, output: args[0] if args else kwargs["hidden_states"], with_kwargs=True
        )
        for index in removed
    ]
    bypassed = logits(tiny_model, token_batch)
    for handle in handles:
        handle.remove()
    pruned = hf_prune.remove_layers(tiny_model, removed)
    assert pruned.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1]
    assert len(pruned.config.layer_types) == 2
    assert pruned.pruning_trace.removed_layers == removed
    assert [layer.source_layer for layer in pruned.pruning_trace.layers] == [0, 3]
    assert (logits(pruned, token_batch) - bypassed).abs().max() <= TOLERANCE


def test_removing_all_heads_or_neurons_removes_the_block(tiny_model, token_batch):
    pruned = hf_prune.apply_plan(tiny_model, PruningPlan(heads={0: []}, neurons={3: []}))
    assert pruned.model.layers[0].self_attn is None
    assert pruned.model.layers[3].mlp is None
    assert pruned.config.layer_types[0] == "mlp"
    assert pruned.config.per_layer_config[0].skip == ["self_attn"]
    assert not any(key.startswith("model.layers.0.self_attn") for key in pruned.state_dict())
    assert torch.isfinite(logits(pruned, token_batch)).all()


def test_surgery_leaves_its_input_untouched(tiny_model, token_batch):
    before = logits(tiny_model, token_batch)
    hf_prune.apply_plan(tiny_model, PruningPlan(removed_layers=[0], heads={1: [0, 1]}, neurons={2: [1, 2, 3]}))
    assert torch.equal(logits(tiny_model, token_batch), before)


def test_config_matches_weights_after_every_primitive(tiny_model):
    model = hf_prune.remove_layers(tiny_model, [0])
    model = hf_prune.remove_kv_groups(model, {0: [2]})
    model = hf_prune.remove_heads(model, {1: [0, 2, 4]})
    model = hf_prune.remove_neurons(model, {2: list(range(10))})
    with torch.device("meta"):
        rebuilt = hf_prune.PrunedForCausalLM(model.config)
    expected = {name: tensor.shape for name, tensor in rebuilt.state_dict().items()}
    assert {name: tensor.shape for name, tensor in model.state_dict().items()} == expected


def test_uneven_kv_groups_are_refused_naming_the_layer(tiny_model):
    with pytest.raises(InvalidPruningError, match=r"layer 2: kept query heads fill key/value groups unevenly"):
        hf_prune.remove_heads(tiny_model, {2: [0]})


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (PruningPlan(removed_layers=[0, 1, 2, 3]), "cannot remove all 4 layers"),
        (PruningPlan(removed_layers=[7]), r"layer indices \[7\] out of range"),
        (PruningPlan(heads={1: [0, 9]}), "layer 1: query head 9 out of range"),
        (PruningPlan(neurons={0: [64]}), "layer 0: neuron 64 out of range"),
        (PruningPlan(rotary_pairs={0: []}), "layer 0: keep at least one rotary pair"),
    ],
)
def test_impossible_plans_are_refused(plan, message):
    with pytest.raises(InvalidPruningError, match=message):
        hf_prune.apply_plan(make_tiny_model("llama"), plan)


def test_a_layer_cannot_both_be_removed_and_pruned():
    with pytest.raises(InvalidPruningError, match="layer 1 is removed"):
        PruningPlan(removed_layers=[1], neurons={1: [0]})


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(hf_prune.UnsupportedArchitectureError, match="gpt2.*llama, mistral, qwen2, qwen3"):
        hf_prune.remove_layers(model, [0])


@requires_smollm2
def test_smollm2_dead_units_are_removed_exactly(smollm2):
    """Dead units anywhere (a middle KV group, one head per group, every third neuron), checked in float64.

    In float64 the pruned logits equal the dense ones to rounding. In float32 the same removal moves SmolLM2's
    logits (magnitude ~20) by ~5e-5: the GEMM kernels sum a shorter inner dimension in a different blocked order,
    so float32 exactness is only checked where the order is unchanged (next test).
    """
    model = copy.deepcopy(smollm2.model).double()  # the session's model is shared: kill units in a copy
    zero_query_heads(model, 3, [3, 4, 5])  # KV group 1 of 3
    zero_query_heads(model, 17, [0, 3, 6])  # one query head per group
    dead_neurons = list(range(0, 1536, 3))
    zero_neurons(model, 17, dead_neurons)
    input_ids = smollm2.tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    before = logits(model, input_ids)
    pruned = hf_prune.remove_kv_groups(model, {3: [1]})
    pruned = hf_prune.remove_heads(pruned, {17: [0, 3, 6]})
    pruned = hf_prune.remove_neurons(pruned, {17: dead_neurons})
    assert pruned.dtype == torch.float64
    assert pruned.config.per_layer_config[3].num_key_value_heads == 2
    assert pruned.config.per_layer_config[17].num_attention_heads == 6
    assert pruned.config.per_layer_config[17].intermediate_size == 1024
    assert (logits(pruned, input_ids) - before).abs().max() <= 1e-9


@requires_smollm2
def test_smollm2_dead_units_are_removed_exactly_in_float32(smollm2):
    """Float32, dead units at the end of each weight (the last KV group, the last 512 neurons): within 1e-5 of the
    largest logit. The narrower matmuls sum in another order, and float32 rounding over 30 layers reaches a few 1e-5
    on logits near 17 (the float64 test above shows the removal itself is exact to 1e-9)."""
    model = copy.deepcopy(smollm2.model)
    zero_query_heads(model, 3, [6, 7, 8])
    zero_neurons(model, 17, list(range(1024, 1536)))
    input_ids = smollm2.tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    before = logits(model, input_ids)
    pruned = hf_prune.remove_kv_groups(model, {3: [2]})
    pruned = hf_prune.remove_neurons(pruned, {17: list(range(1024, 1536))})
    assert pruned.dtype == torch.float32
    assert (logits(pruned, input_ids) - before).abs().max() <= TOLERANCE * before.abs().max()


@requires_smollm2
def test_smollm2_layer_removal_equals_bypass(smollm2):
    model = smollm2.model
    removed = [20, 21, 22, 23, 24, 25, 26]
    input_ids = smollm2.tokenizer("Paris is the capital of", return_tensors="pt").input_ids
    handles = [
        model.model.layers[index].register_forward_hook(
            lambda module, args, kwargs, output: args[0] if args else kwargs["hidden_states"], with_kwargs=True
        )
        for index in removed
    ]
    try:
        bypassed = logits(model, input_ids)
    finally:
        for handle in handles:
            handle.remove()
    pruned = hf_prune.remove_layers(model, removed)
    assert pruned.config.num_hidden_layers == 23
    assert (logits(pruned, input_ids) - bypassed).abs().max() <= TOLERANCE


def test_surgery_patches_nothing_onto_models(tiny_model):
    # The trace is a declared attribute of PrunedForCausalLM; nothing else gains state it did not have.
    attributes = set(vars(tiny_model))
    pruned = hf_prune.remove_heads(hf_prune.remove_layers(tiny_model, [1]), {1: [1, 2, 5]})
    assert set(vars(tiny_model)) == attributes and not hasattr(tiny_model, "pruning_trace")
    trace = hf_prune.surgery.trace_of(pruned)
    assert trace is pruned.pruning_trace
    assert (trace.removed_layers, trace.layers[1].source_layer, trace.layers[1].query_heads) == ([1], 2, [0, 3, 4])
    stock = hf_prune.to_stock(hf_prune.remove_layers(tiny_model, [1]))
    assert not hasattr(stock, "pruning_trace")
    assert hf_prune.surgery.trace_of(stock).removed_layers == []  # a stock model is its own source
