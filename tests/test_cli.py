"""The `hf-prune` command line, run as real processes: the contract's names, outputs and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_prune.scoring import BlockInfluenceConfig, method_config_from_dict
from tests.conftest import requires_smollm2

FAST_CALIBRATION = ["--num-samples", "4", "--seq-len", "32", "--quiet"]


def hf_prune(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_prune", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_console_script_and_version():
    script = Path(sys.executable).with_name("hf-prune")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("hf-prune ")


def test_prune_writes_a_checkpoint_that_loads_natively(tiny_checkpoint, tmp_path):
    out = tmp_path / "pruned"
    result = hf_prune(
        "prune", tiny_checkpoint, "--method", "block-influence", "--num-layers", "1", *FAST_CALIBRATION,
        "--evaluate", "--eval-seq-len", "32", "--eval-max-windows", "2", "--output", out,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote stock checkpoint" in result.stdout
    files = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "pruning.json", "README.md", "report.md", "tokenizer.json"} <= files
    umask = os.umask(0)
    os.umask(umask)
    assert {oct(path.stat().st_mode & 0o777) for path in out.iterdir()} == {oct(0o666 & ~umask)}  # shareable weights
    record = json.loads((out / "pruning.json").read_text())
    assert record["method"] == "block-influence" and record["layers_after"] == 3
    assert record["calibration"]["num_samples"] == 4 and record["calibration"]["seq_len"] == 32
    assert len(record["calibration"]["tokens_sha256"]) == 64
    assert len(record["scores"]["layer_scores"]) == 4
    assert record["evaluation"]["perplexity"][0]["text"] == "builtin-eval"
    assert record["command"].startswith("hf-prune prune ")
    # The settings rebuild the method's configuration; the target is kept beside them.
    assert method_config_from_dict(record["settings"]) == BlockInfluenceConfig()
    assert record["target"] == {"num_layers": 1}
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "block-influence" in card and "Removed layers" in card
    assert "`target={'num_layers': 1}`" in card
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    generated = model.generate(**tokenizer("The statement", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > 2


def test_score_writes_the_scores_contract(tiny_checkpoint, tmp_path):
    out = tmp_path / "scores.json"
    result = hf_prune("score", tiny_checkpoint, "--method", "block-influence", *FAST_CALIBRATION, "--output", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["method"] == "block-influence"
    assert len(scores["layer_scores"]) == 4 and all(isinstance(s, float) for s in scores["layer_scores"])
    assert scores["calibration"]["source"] == "builtin"


def test_eval_prints_one_json_object(tiny_checkpoint):
    result = hf_prune("eval", tiny_checkpoint, "--seq-len", "32", "--max-windows", "3", "--speed", "--new-tokens", "4",
                      "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"perplexity", "tokens", "seq_len"} <= set(report)
    assert {"prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_bytes", "kv_cache_bytes_per_token", "parameters"} <= set(report)
    assert report["tokens"] == 3 * 31 and report["seq_len"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "block-influence", "--ratio", "1.5"], "ratio must be strictly between 0 and 1"),
        (["--method", "block-influence", "--ratio", "0"], "ratio must be strictly between 0 and 1"),
        (["--method", "block-influence", "--num-layers", "4"], "cannot remove 4 of 4 layers"),
        (["--method", "no-such-method", "--ratio", "0.5"], "argument --method: invalid choice"),
        (["--method", "last-layers", "--ratio", "0.5", "--metric", "angular"], "--metric does not apply to --method last-layers"),
        (["--method", "block-influence"], "say how much to remove"),
        (["--method", "block-influence", "--ratio", "0.5", "--calibration", "EMPTY"], "is empty"),
        (["--method", "block-influence", "--ratio", "0.5", "--calibration", "SHORT"], "fewer than"),
        (["--method", "block-influence", "--ratio", "0.5", "--calibration", "missing.txt"], "is not a file"),
        (["--method", "block-influence", "--ratio", "0.5", "--seq-len", "1"], "--seq-len must be at least 2"),
    ],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(tiny_checkpoint, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("A handful of words is not enough calibration text.")
    args = [{"EMPTY": tmp_path / "empty.txt", "SHORT": tmp_path / "short.txt"}.get(a, a) for a in args]
    out = tmp_path / "out"
    result = hf_prune("prune", tiny_checkpoint, *FAST_CALIBRATION[:4], *args, "--output", out)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("hf-prune") and message in lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.txt", "short.txt"]


def test_unsupported_architecture_is_one_line(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32)).save_pretrained(tmp_path / "gpt2")
    result = hf_prune("prune", tmp_path / "gpt2", "--method", "last-layers", "--num-layers", "1", "--output", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "hf-prune: error: unsupported architecture 'gpt2'; hf-prune supports gemma3_text, llama, mistral, qwen2, qwen3"
    )


def test_existing_output_is_refused(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = hf_prune("prune", tiny_checkpoint, "--method", "last-layers", "--num-layers", "1", "--output", out)
    assert result.returncode == 2 and "is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


@requires_smollm2
def test_smollm2_quarter_of_layers_offline(tmp_path):
    """The README's main job, with a smaller calibration and evaluation so that it runs in a test."""
    out = tmp_path / "smollm2"
    result = hf_prune(
        "prune", "smollm2-135m", "--method", "block-influence", "--ratio", "0.25", *FAST_CALIBRATION,
        "--evaluate", "--eval-seq-len", "64", "--eval-max-windows", "2", "--output", out,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "pruning.json").read_text())
    assert (record["layers_before"], record["layers_after"]) == (30, 22)
    assert record["source_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert record["format"] == "stock" and record["params_after"] < record["params_before"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 22
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        tokens = model.generate(**tokenizer("The capital of France is", return_tensors="pt"), max_new_tokens=8, do_sample=False)
    assert tokens.shape[1] > 6
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (out / "README.md").read_text()
