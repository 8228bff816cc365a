"""Calibration at scale: several real processes, layer streaming, sharded checkpoints, device_map offload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import hf_prune
from hf_prune.calibration import load_calibration
from hf_prune.checkpoint import load_streamed, load_tokenizer
from hf_prune.scoring import METHODS, PruningTarget, build_method, get_method, get_method_config
from tests.conftest import make_tiny_model
from tests.test_architecture import heterogeneous

RELATIVE = 1e-6
CALIBRATION = ["--num-samples", "6", "--seq-len", "24", "--batch-size", "2"]
# Method options for `hf-prune score`; methods not listed score with their defaults.
SCORE_OPTIONS = {"block-influence": [["--metric", "cosine"], ["--metric", "angular"], ["--contiguous", "--num-layers", "2"]]}


def score_cases():
    for method in METHODS:
        for options in SCORE_OPTIONS.get(method, [[]]):
            yield pytest.param(method, options, id=" ".join([method, *options]))


def _flat(scores) -> np.ndarray:
    """A score list, or a list of per-layer lists (None for a layer without that block), as one float array."""
    values = []
    for item in scores:
        if isinstance(item, list):
            values += item
        elif item is not None:
            values.append(item)
    return np.array(values, dtype=np.float64)


def assert_same_scores(a: dict, b: dict) -> None:
    """Every score list of `a` equals `b`'s to a relative 1e-6 (float64 sums added in another order)."""
    compared = 0
    for key in ("layer_scores", "head_scores", "kv_group_scores", "neuron_scores", "block_scores"):
        if key in a:
            np.testing.assert_allclose(_flat(a[key]), _flat(b[key]), rtol=RELATIVE, atol=1e-12)
            compared += 1
    assert compared


@pytest.mark.parametrize(("method", "options"), score_cases())
def test_two_processes_score_like_one(tiny_checkpoint, tmp_path, method, options):
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"scores-{processes}.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m", "hf_prune",
            "score", str(tiny_checkpoint), "--method", method, *options, *CALIBRATION, "--quiet", "--output", str(out),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[processes] = json.loads(out.read_text())
    assert_same_scores(outputs[1], outputs[2])


# Run in a fresh interpreter: debug_launcher forks, and forking a process whose OpenMP / onnxruntime thread pools
# already ran (as pytest's does after earlier tests) can deadlock the children.
DEBUG_LAUNCHER_SCRIPT = """
import json, sys
from pathlib import Path

from accelerate import debug_launcher

import hf_prune
from hf_prune.calibration import load_calibration, process_state
from hf_prune.scoring import get_method


def worker(checkpoint, output):
    state = process_state()
    loaded = hf_prune.load_model(checkpoint)
    data = load_calibration(loaded.tokenizer, num_samples=5, seq_len=20)
    scores = get_method("block-influence").score(loaded.model, data, batch_size=2, progress=False)
    Path(f"{output}.{state.process_index}.of.{state.num_processes}").write_text(json.dumps(scores.to_dict()))


if __name__ == "__main__":
    process_state()  # the parent's single-process state, which the forked workers must not inherit
    debug_launcher(worker, args=(sys.argv[1], sys.argv[2]), num_processes=2)
"""


def test_accelerate_debug_launcher_processes_agree(tiny_checkpoint, tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(DEBUG_LAUNCHER_SCRIPT)
    output = str(tmp_path / "scores")
    result = subprocess.run(
        [sys.executable, str(script), str(tiny_checkpoint), output],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (json.loads(Path(f"{output}.{i}.of.2").read_text()) for i in range(2))
    assert first == second  # every process ends with the same scores
    loaded = hf_prune.load_model(tiny_checkpoint)
    data = load_calibration(loaded.tokenizer, num_samples=5, seq_len=20)
    alone = get_method("block-influence").score(loaded.model, data, batch_size=2, progress=False)
    assert_same_scores(alone.to_dict(), first)


@pytest.fixture
def saved_family_model(family, tmp_path):
    model = make_tiny_model(family)
    model.save_pretrained(tmp_path / "model", max_shard_size="60KB")
    return model, tmp_path / "model"


def _calibration(vocab_size: int):
    generator = torch.Generator().manual_seed(5)
    from hf_prune.calibration import CalibrationData

    return CalibrationData(torch.randint(1, vocab_size, (6, 16), generator=generator), "random tokens")


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("block-influence", {}),
        ("block-influence", {"metric": "angular"}),
        ("transact", {}),
        ("llm-rank", {}),
        ("llm-rank", {"chained": True, "gate": "product"}),
        ("wanda-sp", {}),
    ],
)
def test_streaming_scores_like_in_memory_from_a_sharded_checkpoint(saved_family_model, method, options):
    model, path = saved_family_model
    assert (path / "model.safetensors.index.json").is_file()  # the checkpoint really is sharded
    data = _calibration(model.config.vocab_size)
    scorer = get_method(method, **options)
    in_memory = scorer.score(model, data, batch_size=4, progress=False)
    streamed = scorer.score(load_streamed(path), data, batch_size=4, progress=False)
    assert_same_scores(in_memory.to_dict(), streamed.to_dict())


def test_iterative_method_restreams_every_shot(saved_family_model):
    model, path = saved_family_model
    data = _calibration(model.config.vocab_size)
    method = get_method("block-influence", iterative=True)
    in_memory = method.prune(model, data, PruningTarget(num_layers=2), batch_size=3, progress=False)
    streamed = method.prune(load_streamed(path), data, PruningTarget(num_layers=2), batch_size=3, progress=False)
    assert streamed.plan.removed_layers == in_memory.plan.removed_layers
    for a, b in zip(in_memory.scores.extra["round_scores"], streamed.scores.extra["round_scores"]):
        np.testing.assert_allclose(
            [x for x in a if x is not None], [x for x in b if x is not None], rtol=RELATIVE
        )


def test_k_shot_transact_restreams_every_shot(saved_family_model):
    model, path = saved_family_model
    data = _calibration(model.config.vocab_size)
    method = get_method_config("transact", shots=3, allocation="adaptive")
    in_memory = build_method(method).prune(model, data, PruningTarget(ratio=0.4), batch_size=3, progress=False)
    streamed = build_method(method).prune(load_streamed(path), data, PruningTarget(ratio=0.4), batch_size=3, progress=False)
    assert streamed.model.pruning_trace.to_dict() == in_memory.model.pruning_trace.to_dict()


def test_streamed_surgery_writes_the_same_model(saved_family_model, tmp_path):
    model, path = saved_family_model
    pruned = heterogeneous(model)
    streamed = heterogeneous(load_streamed(path))
    assert streamed.structure.model.layers[0].self_attn.q_proj.weight.is_meta  # nothing was loaded
    hf_prune.save_pruned(streamed, tmp_path / "streamed")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "streamed")
    input_ids = _calibration(model.config.vocab_size).input_ids
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids).logits, pruned(input_ids).logits)


def test_streamed_layers_are_read_one_at_a_time_and_are_no_model(saved_family_model):
    model, path = saved_family_model
    source = load_streamed(path)
    # Not a model: code that reads `model.model.layers` fails at once instead of computing on meta tensors.
    with pytest.raises(AttributeError):
        source.model
    alive = []
    for index, layer in source.layers():
        expected = model.model.layers[index].state_dict()
        assert all(torch.equal(tensor, expected[name]) for name, tensor in layer.state_dict().items())
        alive.append(weakref.ref(layer))
        del layer
        assert [ref() is None for ref in alive[:-1]] == [True] * (len(alive) - 1)  # the previous layer is released
    assert len(alive) == model.config.num_hidden_layers


def test_device_map_offloaded_model_scores_like_in_memory(tiny_checkpoint, tmp_path):
    loaded = hf_prune.load_model(tiny_checkpoint)
    data = load_calibration(load_tokenizer(tiny_checkpoint), num_samples=4, seq_len=16)
    offloaded = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoint, device_map="auto", max_memory={"cpu": "100KB"}, offload_folder=str(tmp_path / "offload")
    )
    assert "disk" in set(offloaded.hf_device_map.values())
    scorer = get_method("block-influence")
    assert_same_scores(
        scorer.score(loaded.model, data, progress=False).to_dict(), scorer.score(offloaded, data, progress=False).to_dict()
    )


def test_stream_flag_on_the_command_line(tiny_checkpoint, tmp_path):
    outputs = {}
    for mode in ("memory", "stream"):
        out = tmp_path / mode
        flags = ["--stream"] if mode == "stream" else []
        result = subprocess.run(
            [sys.executable, "-m", "hf_prune", "prune", str(tiny_checkpoint), "--method", "block-influence",
             "--num-layers", "1", *CALIBRATION, *flags, "--quiet", "--output", str(out)],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[mode] = out
    assert (outputs["memory"] / "model.safetensors").read_bytes() == (outputs["stream"] / "model.safetensors").read_bytes()
    refused = subprocess.run(
        [sys.executable, "-m", "hf_prune", "prune", str(tiny_checkpoint), "--method", "block-influence",
         "--num-layers", "1", "--stream", "--evaluate", "--output", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=600,
    )
    assert refused.returncode == 2 and "cannot be evaluated in the same run" in refused.stderr
