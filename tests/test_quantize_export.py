"""Composing pruning with quantization (optimum-quanto) and ONNX export (transformers' exporter + ONNX Runtime)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch

import hf_prune
from hf_prune.errors import FormatError
from hf_prune.quantization import QUANTIZATION_MAP_NAME, is_quantized, quantize_weights
from tests.conftest import heterogeneous, make_tiny_model
from tests.helpers import run_without_hf_prune

quanto = pytest.importorskip("optimum.quanto", reason="needs hf-prune[quant] (optimum-quanto)")

FAST = ["--num-samples", "4", "--seq-len", "32", "--quiet"]
INPUT_IDS = torch.randint(1, 96, (2, 10), generator=torch.Generator().manual_seed(1))


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_prune", *map(str, args)], capture_output=True, text=True, env=env)


# ---------------------------------------------------------------------------------------------------- quantization


@pytest.mark.parametrize("weights", ["int8", "int4"])
@pytest.mark.parametrize("shape", ["stock", "heterogeneous"])
def test_quantized_pruned_checkpoint_reloads_and_generates(weights, shape, tmp_path):
    model = make_tiny_model("qwen2")
    pruned = hf_prune.remove_layers(model, [2]) if shape == "stock" else heterogeneous(model)
    record = hf_prune.save_pruned(pruned, tmp_path / "q", quantize=weights, model_card=True)
    assert record.format == ("stock" if shape == "stock" else "pruned")
    assert record.quantization["weights"] == weights and record.quantization["backend"] == "optimum-quanto"
    assert record.quantization["quantized_layers"] > 0 and record.quantization["excluded"] == ["lm_head"]
    assert (tmp_path / "q" / QUANTIZATION_MAP_NAME).is_file()
    assert not is_quantized(pruned)  # the caller's model was left as it was
    card = (tmp_path / "q" / "README.md").read_text()
    assert "QuantizedModelForCausalLM.from_pretrained" in card and f"**{weights}**" in card

    reloaded = hf_prune.load_model(tmp_path / "q", tokenizer=False).model
    assert is_quantized(reloaded)
    expected = quantize_weights(copy.deepcopy(pruned), weights)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(INPUT_IDS).logits, expected(INPUT_IDS).logits, rtol=0, atol=1e-6)
        dense = pruned(INPUT_IDS).logits
        error = (reloaded(INPUT_IDS).logits - dense).abs().mean() / dense.abs().mean()
    # Quantized, but still the same model (int4 is coarse on a tiny random model: 16 levels per weight row).
    assert 0 < error < (0.1 if weights == "int8" else 1.0)
    generated = reloaded.generate(INPUT_IDS, attention_mask=torch.ones_like(INPUT_IDS), max_new_tokens=6, do_sample=False)
    assert generated.shape == (2, 16)


def test_int8_weights_take_a_quarter_of_the_space(tmp_path):
    model = hf_prune.remove_layers(make_tiny_model("llama"), [1])
    hf_prune.save_pruned(model, tmp_path / "float", model_card=False)
    hf_prune.save_pruned(model, tmp_path / "int8", quantize="int8", model_card=False)
    from safetensors import safe_open

    def linear_bytes(path):
        with safe_open(path / "model.safetensors", "pt") as handle:
            return sum(
                handle.get_tensor(name).nbytes for name in handle.keys() if ".layers." in name and "norm" not in name
            )

    ratio = linear_bytes(tmp_path / "int8") / linear_bytes(tmp_path / "float")
    assert 0.25 <= ratio < 0.3  # int8 data plus one float scale per output row


def test_stock_quantized_checkpoint_loads_with_optimum_quanto_alone(tmp_path):
    model = hf_prune.remove_layers(make_tiny_model("llama"), [1])
    hf_prune.save_pruned(model, tmp_path / "q", quantize="int8", model_card=False)
    expected = quantize_weights(copy.deepcopy(model), "int8")
    with torch.no_grad():
        logits = expected(INPUT_IDS).logits
    out = tmp_path / "logits.json"
    run_without_hf_prune(
        f"""
        import json, torch
        from optimum.quanto import QuantizedModelForCausalLM
        model = QuantizedModelForCausalLM.from_pretrained({str(tmp_path / "q")!r})
        with torch.no_grad():
            json.dump(model(torch.tensor({INPUT_IDS.tolist()})).logits.tolist(), open({str(out)!r}, "w"))
        """
    )
    torch.testing.assert_close(torch.tensor(json.loads(out.read_text())), logits, rtol=0, atol=1e-5)


def test_cli_prune_quantize_evaluates_and_writes_the_quantized_model(tiny_checkpoint, tmp_path):
    out = tmp_path / "bi-int8"
    result = cli(
        "prune", tiny_checkpoint, "--method", "block-influence", "--num-layers", "1", *FAST, "--quantize", "int8",
        "--evaluate", "--eval-seq-len", "32", "--eval-max-windows", "2", "--output", out,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "pruning.json").read_text())
    assert record["quantization"]["weights"] == "int8" and record["format"] == "stock"
    assert (out / QUANTIZATION_MAP_NAME).is_file()
    # The evaluation measured the model that was written.
    loaded = hf_prune.load_model(out)
    from hf_prune.evaluation import perplexity

    entry = record["evaluation"]["perplexity"][0]
    assert perplexity(loaded.model, loaded.tokenizer, seq_len=32, max_windows=2, progress=False)["perplexity"] == pytest.approx(
        entry["pruned"], rel=1e-5
    )


def test_missing_extras_are_one_line_errors(tiny_checkpoint, tmp_path):
    blocker = textwrap.dedent(
        """
        import runpy, sys
        for name in ("optimum", "optimum.quanto", "onnx", "onnxruntime", "onnxscript"):
            sys.modules[name] = None  # as if not installed: import fails, importlib.util.find_spec says None
        sys.argv = ["hf-prune", *sys.argv[1:]]
        runpy.run_module("hf_prune", run_name="__main__")
        """
    )
    for args, hint in (
        (["prune", tiny_checkpoint, "--method", "last-layers", "--num-layers", "1", "--quantize", "int4",
          "--output", tmp_path / "q"], "pip install 'hf-prune[quant]'"),
        (["export", tiny_checkpoint, "--output", tmp_path / "o"], "pip install 'hf-prune[onnx]'"),
    ):
        result = subprocess.run([sys.executable, "-c", blocker, *map(str, args)], capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert hint in result.stderr and result.stderr.count("\n") == 1
        assert not (tmp_path / "q").exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------------------ ONNX


def test_export_under_a_transformers_without_the_exporter_is_a_one_line_error(tiny_checkpoint, tmp_path):
    from hf_prune.export.onnx import exporter_available

    if exporter_available():
        pytest.skip("this transformers has the exporter (the oldest-transformers run checks the refusal)")
    result = cli("export", tiny_checkpoint, "--output", tmp_path / "onnx")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "ONNX export needs transformers>=5.23" in result.stderr and not (tmp_path / "onnx").exists()


@pytest.fixture(scope="module")
def onnx_modules():
    pytest.importorskip("onnxruntime", reason="needs hf-prune[onnx]")
    pytest.importorskip("onnxscript", reason="needs hf-prune[onnx]")
    from hf_prune.export.onnx import exporter_available

    if not exporter_available():
        pytest.skip("ONNX export needs transformers>=5.23 (its exporters)")
    from hf_prune.export import export_onnx, load_onnx

    return export_onnx, load_onnx


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_heterogeneous_model_exports_to_onnx_and_matches_pytorch(onnx_modules, family, tmp_path):
    export_onnx, load_onnx = onnx_modules
    model = heterogeneous(make_tiny_model(family)).eval()
    widths = {(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size) for c in model.config.per_layer_config}
    assert len(widths) == model.config.num_hidden_layers  # every layer different, one without attention
    export_onnx(model, tmp_path / "onnx")
    assert {"prefill.onnx", "decode.onnx", "export.json", "config.json"} <= {p.name for p in (tmp_path / "onnx").iterdir()}
    generator = load_onnx(tmp_path / "onnx")
    with torch.no_grad():
        torch.testing.assert_close(generator(INPUT_IDS), model(INPUT_IDS).logits, rtol=0, atol=1e-4)
        expected = model.generate(INPUT_IDS, attention_mask=torch.ones_like(INPUT_IDS), max_new_tokens=12, do_sample=False)
    generation = model.generation_config  # a row that ends early is padded, as generate() does
    tokens = generator.generate(INPUT_IDS, 12, eos_token_id=generation.eos_token_id, pad_token_id=generation.pad_token_id)
    assert torch.equal(tokens, expected)


def test_quantized_model_is_not_exported(onnx_modules, tmp_path):
    export_onnx, _ = onnx_modules
    model = quantize_weights(hf_prune.remove_layers(make_tiny_model("llama"), [1]), "int8")
    with pytest.raises(FormatError, match="quantized"):
        export_onnx(model, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_cli_export_checks_a_stock_checkpoint_against_pytorch(onnx_modules, tiny_checkpoint, tmp_path):
    pruned = tmp_path / "pruned"
    assert cli("prune", tiny_checkpoint, "--method", "last-layers", "--num-layers", "1", "--quiet", "--output", pruned).returncode == 0
    result = cli("export", pruned, "--output", tmp_path / "onnx", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["greedy_tokens_equal"] and report["max_abs_logit_difference"] < 1e-4
    names = {p.name for p in (tmp_path / "onnx").iterdir()}
    assert {"prefill.onnx", "decode.onnx", "pruning.json", "tokenizer.json"} <= names
