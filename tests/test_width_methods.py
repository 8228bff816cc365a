"""TransAct and the width baselines: planted unimportance, GQA validity, exact K-shot targets, loadable results."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import hf_prune
from hf_prune.calibration import CalibrationData, load_calibration
from hf_prune.scoring import PruningTarget, build_method, get_method, get_method_config
from hf_prune.scoring.transact import head_salience
from tests.conftest import make_tiny_model
from tests.helpers import logits_in_fresh_process

WIDTH_METHODS = ["transact", "magnitude", "activation", "wanda-sp", "random"]


@pytest.fixture
def data() -> CalibrationData:
    generator = torch.Generator().manual_seed(0)
    return CalibrationData(torch.randint(1, 96, (6, 14), generator=generator), "random tokens")


def plant_dead_units(model, layer: int = 1, group: int = 2, neurons=(3, 17, 40, 41)):
    """Make KV group `group` and some neurons of `layer` produce nothing: zero value rows, zero up rows."""
    attention = model.model.layers[layer].self_attn
    head_dim = model.config.head_dim if hasattr(model.config, "head_dim") else attention.head_dim
    with torch.no_grad():
        attention.v_proj.weight[group * head_dim : (group + 1) * head_dim] = 0
        if attention.v_proj.bias is not None:
            attention.v_proj.bias[group * head_dim : (group + 1) * head_dim] = 0
        model.model.layers[layer].mlp.up_proj.weight[list(neurons)] = 0
        if model.model.layers[layer].mlp.up_proj.bias is not None:
            model.model.layers[layer].mlp.up_proj.bias[list(neurons)] = 0
    return model


def test_head_salience_is_mean_plus_scaled_max():
    salience = torch.tensor([1.0, 3.0, 2.0, 2.0], dtype=torch.float64)
    assert head_salience(salience, 2) == pytest.approx([2.0 + 5 * 3.0, 2.0 + 5 * 2.0])


@pytest.mark.parametrize("method", ["transact", "activation", "wanda-sp"])
def test_planted_dead_units_are_exactly_the_ones_removed(family, data, method):
    model = plant_dead_units(make_tiny_model(family))
    config = get_method_config(method, attention_width=4, mlp_width=60, **({"shots": 1} if method == "transact" else {}))
    result = build_method(config).prune(model, data, None, progress=False)
    trace = result.model.pruning_trace.layers[1]
    assert trace.kv_heads == [0, 1]  # group 2 went
    assert trace.query_heads == [0, 1, 2, 3]
    assert sorted(set(range(64)) - set(trace.neurons)) == [3, 17, 40, 41]


def test_magnitude_removes_the_smallest_weights(data):
    model = make_tiny_model("llama")
    with torch.no_grad():
        mlp = model.model.layers[2].mlp
        for weight in (mlp.gate_proj.weight, mlp.up_proj.weight):
            weight[[5, 6]] *= 1e-3
        mlp.down_proj.weight[:, [5, 6]] *= 1e-3
    result = get_method("magnitude", mlp_width=62).prune(model, None, None, progress=False)
    assert sorted(set(range(64)) - set(result.model.pruning_trace.layers[2].neurons)) == [5, 6]


@pytest.mark.parametrize("method", WIDTH_METHODS)
@pytest.mark.parametrize("gqa", ["groups", "heads"])
@pytest.mark.parametrize("allocation", ["uniform", "adaptive"])
def test_every_layer_keeps_whole_kv_groups(data, method, gqa, allocation):
    options = {"gqa": gqa, "allocation": allocation, **({"shots": 2} if method == "transact" else {})}
    model = make_tiny_model("qwen2")  # GQA bookkeeping is the same in every family
    result = get_method(method, **options).prune(model, data, PruningTarget(ratio=0.5), progress=False)
    for layer in result.model.config.per_layer_config:
        assert layer.num_attention_heads % layer.num_key_value_heads == 0
    heads = [layer.num_attention_heads for layer in result.model.config.per_layer_config]
    kv = [layer.num_key_value_heads for layer in result.model.config.per_layer_config]
    if gqa == "heads":
        assert kv == [3, 3, 3, 3]  # the KV cache stays; groups got thinner
    if allocation == "uniform":
        assert len(set(heads)) == 1
    assert sum(heads) == {"groups": 16, "heads": 12}[gqa]


@pytest.mark.parametrize("shots", [1, 2, 3, 8])
def test_k_shot_schedule_reaches_the_exact_target(tiny_model, data, shots):
    method = get_method_config("transact", shots=shots, attention_width=2, mlp_width=21)
    result = build_method(method).prune(tiny_model, data, None, progress=False)
    for layer in result.model.config.per_layer_config:
        assert (layer.num_attention_heads, layer.num_key_value_heads, layer.intermediate_size) == (2, 1, 21)
    plans = result.scores.extra["shot_plans"]
    assert len(plans) == shots
    if shots == 3:
        # Widths move (current - target) // (shots left): neurons 64 -> 50 -> 36 -> 21.
        sizes = [len(plan["neurons"]["0"]) for plan in plans]
        assert sizes == [50, 36, 21]


def test_adaptive_allocation_writes_a_heterogeneous_checkpoint_that_loads(family, data, tmp_path):
    model = plant_dead_units(make_tiny_model(family))
    result = get_method("transact", shots=2, allocation="adaptive").prune(
        model, data, PruningTarget(ratio=0.4), progress=False
    )
    widths = {(layer.num_attention_heads, layer.intermediate_size) for layer in result.model.config.per_layer_config}
    assert len(widths) > 1
    record = hf_prune.save_pruned(result.model, tmp_path / "out")
    assert record.format == "pruned"
    input_ids = data.input_ids[:2]
    with torch.no_grad():
        expected = result.model(input_ids).logits
        assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "out")(input_ids).logits, expected)
    remote, facts = logits_in_fresh_process(tmp_path / "out", input_ids, tmp_path, trust_remote_code=True)
    assert torch.equal(remote, expected) and not facts["hf_prune_imported"]


@pytest.mark.parametrize("options", [{"gqa": "groups"}, {"gqa": "heads"}, {"head_dim_ratio": 0.5}])
def test_cached_and_uncached_generation_agree_after_transact(tiny_model, data, options):
    result = get_method("transact", shots=2, **options).prune(
        tiny_model, data, PruningTarget(ratio=0.5), progress=False
    )
    prompt = data.input_ids[:2, :6]
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(result.model.generate(prompt, use_cache=True, **kwargs), result.model.generate(prompt, use_cache=False, **kwargs))


def test_head_dim_pruning_keeps_original_rope_frequencies(data):
    model = make_tiny_model("llama")
    result = get_method("transact", shots=1, head_dim_ratio=0.5).prune(
        model, data, PruningTarget(ratio=0.25), progress=False
    )
    attention = result.model.model.layers[0].self_attn
    pairs = result.model.config.per_layer_config[0].rotary_pairs
    assert attention.head_dim == 4 and len(pairs) == 2
    assert result.model.config.rope_head_dim == 8
    assert attention.rotary_index.tolist() == pairs + [p + 4 for p in pairs]
    assert attention.scaling == pytest.approx(8**-0.5)


def test_kv_cache_shrinks_with_whole_groups(tiny_model, data):
    dense = hf_prune.to_pruned(tiny_model)
    result = get_method("activation", gqa="groups").prune(tiny_model, data, PruningTarget(ratio=0.5), progress=False)
    record = hf_prune.PruningRecord.from_model(result.model)
    assert record.kv_cache_bytes_per_token_after == record.kv_cache_bytes_per_token_before * 2 // 3
    assert record.width_kept["attention"] == pytest.approx(4 / 6)
    assert dense.config.num_key_value_heads == 3


def test_width_method_needs_an_amount(tiny_model, data):
    with pytest.raises(hf_prune.InvalidPruningError, match="say how much to remove"):
        get_method("transact").prune(tiny_model, data, None, progress=False)
    with pytest.raises(hf_prune.InvalidPruningError, match="give --ratio, not --num-layers"):
        get_method("transact").prune(tiny_model, data, PruningTarget(num_layers=1), progress=False)


@pytest.mark.parametrize("gqa", ["groups", "heads"])
def test_adaptive_floor_holds_against_the_source_widths_after_every_shot(stories260k, gqa):
    # The floor is a fraction of the source model's width in every layer; it used to compound shot by shot.
    from tests.conftest import SHARED

    data = load_calibration(
        stories260k.tokenizer, SHARED / "data" / "tinystories_val_prefix.txt", num_samples=8, seq_len=128
    )
    source = stories260k.model.config
    config = get_method_config("transact", shots=8, allocation="adaptive", min_keep=0.25, gqa=gqa)
    result = build_method(config).prune(stories260k.model, data, PruningTarget(ratio=0.5), progress=False)
    neuron_floor = -(-source.intermediate_size // 4)
    head_unit = source.num_attention_heads // source.num_key_value_heads if gqa == "groups" else source.num_key_value_heads
    head_floor = -(-(source.num_attention_heads // head_unit) // 4) * head_unit
    layers = result.model.config.per_layer_config
    assert min(layer.intermediate_size for layer in layers) >= neuron_floor
    assert min(layer.num_attention_heads for layer in layers) >= head_floor
    # ... and the budget is still met: half of the source's neurons overall.
    assert sum(layer.intermediate_size for layer in layers) == round(0.5 * source.intermediate_size) * len(layers)


def test_single_kv_head_prunes_query_heads_within_the_group_and_says_so(data, caplog):
    """Gemma-3-270m has one KV head: whole-group pruning would remove all attention, so query heads go instead."""
    model = make_tiny_model("gemma3", num_attention_heads=4, num_key_value_heads=1)
    with caplog.at_level("WARNING", logger="hf_prune.scoring.width"):
        result = get_method("transact", gqa="groups").prune(model, data, PruningTarget(ratio=0.5), progress=False)
    layers = result.model.config.per_layer_config
    assert [(layer.num_attention_heads, layer.num_key_value_heads) for layer in layers] == [(2, 1)] * 4
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "layers 0-3 have a single KV head" in warnings[0], warnings
    input_ids = data.input_ids[:2]
    assert torch.isfinite(result.model(input_ids).logits).all()
