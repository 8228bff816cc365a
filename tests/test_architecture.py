"""The pruned architecture: exact conversion, heterogeneous generation with every cache, config validation."""

from __future__ import annotations

import pytest
import torch

import hf_prune
from hf_prune import PrunedConfig, PrunedForCausalLM
from hf_prune.architecture.modeling_pruned import CACHE_NAME, UnsupportedTransformersError
from tests.conftest import heterogeneous


def left_padded_batch(vocab_size: int = 96, pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(1, vocab_size, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, :4], attention_mask[1, :4] = pad_token_id, 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def greedy(model, batch, **kwargs) -> torch.Tensor:
    return model.generate(**batch, max_new_tokens=12, do_sample=False, pad_token_id=0, **kwargs)


def test_conversion_to_pruned_format_is_exact(tiny_model, token_batch):
    with torch.no_grad():
        reference = tiny_model(token_batch).logits
        converted = hf_prune.to_pruned(tiny_model)
        assert isinstance(converted, PrunedForCausalLM)
        assert torch.equal(converted(token_batch).logits, reference)
        back = hf_prune.to_stock(converted)
        assert type(back) is type(tiny_model)
        assert torch.equal(back(token_batch).logits, reference)


def test_heterogeneous_model_has_the_widths_it_was_given(tiny_model):
    model = heterogeneous(tiny_model)
    layers = model.config.per_layer_config
    head_dim = hf_prune.to_pruned(tiny_model).config.head_dim
    assert [layer.num_key_value_heads for layer in layers] == [2, 3, 3, 0]
    assert [layer.num_attention_heads for layer in layers] == [4, 3, 6, 0]
    assert layers[2].head_dim == 2 * len(range(0, head_dim // 2, 2))
    assert model.config.layer_types[3] == "mlp" and model.model.layers[3].self_attn is None
    assert model.model.layers[2].mlp is None
    assert [layer.intermediate_size for layer in layers] == [64, 32, 0, 64]


def test_cached_generation_equals_uncached_with_left_padding(tiny_model):
    model = heterogeneous(tiny_model)
    batch = left_padded_batch()
    with_cache = greedy(model, batch, use_cache=True)
    without_cache = greedy(model, batch, use_cache=False)
    assert torch.equal(with_cache, without_cache)


def test_static_and_dynamic_caches_agree(tiny_model):
    model = heterogeneous(tiny_model)
    batch = left_padded_batch()
    dynamic = greedy(model, batch)
    static = greedy(model, batch, cache_implementation="static")
    assert torch.equal(dynamic, static)


def test_first_layer_without_attention_or_mlp_generates_with_its_cache(tiny_model):
    # The cache's length is read from the first layer that has attention, not from layer 0.
    model = hf_prune.apply_plan(hf_prune.to_pruned(tiny_model), hf_prune.PruningPlan(heads={0: []}, neurons={1: []}))
    assert model.config.layer_types[0] == "mlp" and model.model.layers[1].mlp is None
    batch = left_padded_batch()
    uncached = greedy(model, batch, use_cache=False)
    cached = getattr(model(**batch, use_cache=True), CACHE_NAME)
    if not hasattr(cached.layers[0], "get_seq_length"):
        # transformers 5.23+: generate() reads the cache length from layer 0, which an attention-free layer lacks.
        with pytest.raises(UnsupportedTransformersError, match="layer 0 has no attention.*use_cache=False"):
            greedy(model, batch, use_cache=True)
        return
    assert torch.equal(greedy(model, batch, use_cache=True), uncached)
    assert torch.equal(greedy(model, batch, cache_implementation="static"), uncached)


def test_layer_without_attention_keeps_cached_forward_exact(tiny_model, token_batch):
    # Decoding token by token with the cache equals the full forward, whichever layer lost its attention.
    for layer in (0, 2):
        model = hf_prune.apply_plan(hf_prune.to_pruned(tiny_model), hf_prune.PruningPlan(heads={layer: []}))
        full = model(token_batch).logits
        cache = getattr(model(token_batch[:, :4], use_cache=True), CACHE_NAME)
        for position in range(4, token_batch.shape[1]):
            step = model(token_batch[:, position : position + 1], cache=cache, use_cache=True)
            cache = getattr(step, CACHE_NAME)
            assert torch.allclose(step.logits[:, -1], full[:, position], atol=1e-4)


def test_cache_under_either_name_gives_the_same_logits(tiny_model, token_batch):
    model = heterogeneous(tiny_model)
    prompt, last = token_batch[:, :-1], token_batch[:, -1:]
    full = model(token_batch).logits[:, -1]
    for name in ("cache", "past_key_values"):
        cache = getattr(model(prompt, use_cache=True), CACHE_NAME)
        assert torch.allclose(model(last, **{name: cache}).logits[:, -1], full, atol=1e-5)


def test_cache_under_an_unknown_name_is_refused_not_ignored(tiny_model, token_batch):
    # Silently ignoring a renamed cache argument decodes every step without the earlier tokens: wrong text.
    model = heterogeneous(tiny_model)
    cache = getattr(model(token_batch[:, :-1], use_cache=True), CACHE_NAME)
    with pytest.raises(UnsupportedTransformersError, match=r"passes the KV cache as `kv_cache`.*supports transformers >="):
        model(token_batch[:, -1:], kv_cache=cache)


def test_padded_row_generates_what_it_generates_alone(tiny_model):
    model = heterogeneous(tiny_model)
    batch = left_padded_batch()
    alone = {"input_ids": batch["input_ids"][1:, 4:], "attention_mask": batch["attention_mask"][1:, 4:]}
    assert torch.equal(greedy(model, batch)[1, 9:], greedy(model, alone)[0, 5:])


def test_cache_holds_nothing_for_a_layer_without_attention(tiny_model):
    model = heterogeneous(tiny_model)
    out = model(**left_padded_batch(), use_cache=True)
    cache = getattr(out, CACHE_NAME)
    # transformers maps an "mlp" layer to a cache layer without keys (DummyLayer from 5.23, a linear-attention
    # placeholder before): whatever its class, it holds no tensor.
    assert not [value for value in vars(cache.layers[3]).values() if isinstance(value, torch.Tensor) and value.numel()]
    assert cache.layers[0].keys.shape[1] == 2  # KV heads of layer 0
    assert cache.layers[2].keys.shape[-1] == model.config.per_layer_config[2].head_dim


def test_eager_and_sdpa_attention_agree(tiny_model):
    model = heterogeneous(tiny_model)
    batch = left_padded_batch()
    real_tokens = batch["attention_mask"].bool()  # what padding positions produce is undefined
    results = {}
    for implementation in ("eager", "sdpa"):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            results[implementation] = model(**batch).logits[real_tokens]
    # Different kernels, same maths: equal up to float32 rounding of differently ordered sums.
    torch.testing.assert_close(results["eager"], results["sdpa"], atol=1e-4, rtol=1e-4)


def test_hidden_states_are_returned_per_layer(tiny_model, token_batch):
    model = heterogeneous(tiny_model)
    out = model(token_batch, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1


def test_config_refuses_heads_not_divisible_into_kv_groups():
    with pytest.raises(Exception, match=r"layer 1: num_attention_heads \(5\) is not divisible by num_key_value_heads \(2\)"):
        PrunedConfig(
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            per_layer_config={1: {"num_attention_heads": 5}},
        )


def test_config_refuses_attentionless_layer_with_attention_type():
    with pytest.raises(Exception, match=r"layer 0: layer type 'full_attention' disagrees with skip"):
        PrunedConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, per_layer_config={0: {"skip": ["self_attn"]}})


def test_config_writes_explicit_sizes_for_every_layer(tiny_model):
    model = heterogeneous(tiny_model)
    per_layer = model.config.to_dict()["per_layer_config"]
    assert sorted(per_layer) == ["0", "1", "2", "3"]
    for layer in per_layer.values():
        assert {"num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size"} <= set(layer)
