"""Perplexity matches a plain transformers loss computation; speed measurements are consistent."""

from __future__ import annotations

import math

import pytest
import torch

import hf_prune
from hf_prune.calibration import load_text
from hf_prune.evaluation import evaluation_windows, kv_cache_bytes_per_token, measure_speed, perplexity
from tests.conftest import SHARED, make_tiny_model, requires_shared, requires_smollm2


def plain_transformers_perplexity(model, windows: torch.Tensor) -> float:
    """The textbook way: transformers' own loss (mean NLL of tokens 1..T-1) per window, averaged, exponentiated."""
    with torch.no_grad():
        losses = [model(input_ids=window[None], labels=window[None]).loss.item() for window in windows]
    return math.exp(sum(losses) / len(losses))


@requires_smollm2
def test_smollm2_perplexity_matches_plain_transformers_loss(smollm2):
    text = load_text("builtin-eval")
    result = perplexity(smollm2.model, smollm2.tokenizer, text, seq_len=256, max_windows=4, progress=False)
    windows = evaluation_windows(smollm2.tokenizer, text, 256, 4)
    assert result["windows"] == 4 and result["tokens"] == 4 * 255 and result["bos"] is False
    assert windows[0, 0].item() != smollm2.tokenizer.bos_token_id
    reference = plain_transformers_perplexity(smollm2.model, windows)
    assert abs(result["perplexity"] - reference) / reference < 1e-3


@requires_smollm2
@requires_shared
def test_smollm2_wikitext_slice_matches_plain_loss(smollm2):
    text = load_text(SHARED / "data" / "wikitext2_test_raw.txt")
    result = perplexity(smollm2.model, smollm2.tokenizer, text, seq_len=512, max_windows=2, progress=False)
    reference = plain_transformers_perplexity(smollm2.model, evaluation_windows(smollm2.tokenizer, text, 512, 2))
    assert abs(result["perplexity"] - reference) / reference < 1e-3
    assert 10 < result["perplexity"] < 60


@requires_shared
def test_stories260k_puts_bos_first_and_matches_the_known_perplexity(stories260k):
    text = load_text(SHARED / "data" / "tinystories_val_prefix.txt")
    result = perplexity(stories260k.model, stories260k.tokenizer, text, seq_len=512, batch_size=16, progress=False)
    windows = evaluation_windows(stories260k.tokenizer, text, 512)
    assert result["bos"] is True and (windows[:, 0] == stories260k.tokenizer.bos_token_id).all()
    assert abs(result["perplexity"] - 5.3) < 0.1  # ../shared/README.md: about 5.3 over the whole prefix
    reference = plain_transformers_perplexity(stories260k.model, windows[:8])
    subset = perplexity(stories260k.model, stories260k.tokenizer, text, seq_len=512, max_windows=8, progress=False)
    assert abs(subset["perplexity"] - reference) / reference < 1e-3


def test_speed_measurement_reports_the_contract_fields():
    dense = make_tiny_model("llama")
    pruned = hf_prune.apply_plan(dense, hf_prune.PruningPlan(removed_layers=[3], heads={0: [0, 1, 2, 3]}))
    prompt = torch.arange(1, 17)
    for model in (dense, pruned):
        speed = measure_speed(model, prompt, new_tokens=4, repeats=1)
        assert speed["prefill_tokens_per_s"] > 0 and speed["decode_tokens_per_s"] > 0
        assert speed["peak_memory_bytes"] >= speed["weights_bytes"] > 0
        assert speed["kv_cache_bytes_per_token"] == kv_cache_bytes_per_token(model.config, model.dtype)
        assert speed["parameters"] == sum(p.numel() for p in model.parameters())
    # float32 keys and values: layer 0 now has 2 KV heads of 8 channels, layers 1 and 2 keep 3.
    assert kv_cache_bytes_per_token(pruned.config) == 2 * 4 * (2 * 8 + 3 * 8 + 3 * 8)


def test_report_lists_parameters_and_kv_cache_once(tmp_path):
    from hf_prune.provenance import render_report

    dense = make_tiny_model("llama")
    pruned = hf_prune.remove_layers(dense, [3])
    prompt = torch.arange(1, 17)
    record = hf_prune.save_pruned(pruned, tmp_path / "out", model_card=False)
    record.evaluation["speed"] = {
        name: measure_speed(model, prompt, new_tokens=2, repeats=1) for name, model in (("dense", dense), ("pruned", pruned))
    }
    report = render_report(record.to_dict(), {"scoring": 1.0})
    assert report.count("| parameters |") == 1 and report.count("| KV cache per token |") == 1
    assert "| decode tokens/s |" in report


@pytest.mark.parametrize("seq_len", [16, 64])
def test_perplexity_matches_plain_loss_on_a_tiny_checkpoint(tiny_checkpoint, seq_len):
    loaded = hf_prune.load_model(tiny_checkpoint)
    text = load_text("builtin-eval")
    result = perplexity(loaded.model, loaded.tokenizer, text, seq_len=seq_len, max_windows=5, batch_size=2, progress=False)
    reference = plain_transformers_perplexity(loaded.model, evaluation_windows(loaded.tokenizer, text, seq_len, 5))
    assert result["windows"] == 5 and result["tokens"] == 5 * (seq_len - 1)
    assert abs(result["perplexity"] - reference) / reference < 1e-3
