"""Pruned-format checkpoints outlive the transformers they were saved with, in both directions.

A checkpoint's remote code is frozen when it is saved; its users upgrade (or keep) transformers under it. Each test
saves a heterogeneous checkpoint with this interpreter's transformers, then loads it in a fresh process of another
interpreter (`HF_PRUNE_OTHER_PYTHON`, another transformers release) with `trust_remote_code=True` and without
hf_prune importable, and checks logits and cached against uncached greedy there. `tests/transformers_range.sh` runs
this module under the newest and the oldest supported transformers, each pointing at the other.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import hf_prune
from tests.conftest import heterogeneous, make_tiny_model
from tests.helpers import run_without_hf_prune

OTHER_PYTHON = os.environ.get("HF_PRUNE_OTHER_PYTHON")
pytestmark = pytest.mark.skipif(
    not OTHER_PYTHON, reason="HF_PRUNE_OTHER_PYTHON (an interpreter with another transformers) is not set"
)


def other_transformers_version() -> str:
    command = [OTHER_PYTHON, "-c", "import transformers; print(transformers.__version__)"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_the_other_interpreter_has_another_transformers():
    assert other_transformers_version() != transformers.__version__


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
def test_checkpoint_saved_here_generates_the_same_under_the_other_transformers(family, tmp_path):
    model = heterogeneous(make_tiny_model(family))
    hf_prune.save_pruned(model, tmp_path / "checkpoint")
    generator = torch.Generator().manual_seed(5)
    input_ids = torch.randint(1, model.config.vocab_size, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, :3], attention_mask[1, :3] = 0, 0  # left padding
    greedy = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask).logits
    expected = model.generate(input_ids=input_ids, attention_mask=attention_mask, **greedy)
    save_file({"input_ids": input_ids, "attention_mask": attention_mask}, tmp_path / "inputs.safetensors")

    run_without_hf_prune(
        f"""
        import json, sys, torch, transformers
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path / "checkpoint")!r}, trust_remote_code=True)
        batch = load_file({str(tmp_path / "inputs.safetensors")!r})
        greedy = {greedy!r}
        with torch.no_grad():
            logits = model(**batch).logits
        cached = model.generate(**batch, use_cache=True, **greedy)
        uncached = model.generate(**batch, use_cache=False, **greedy)
        save_file({{"logits": logits, "cached": cached, "uncached": uncached}}, {str(tmp_path / "out.safetensors")!r})
        facts = {{"transformers": transformers.__version__,
                 "hf_prune_imported": any(m.startswith("hf_prune") for m in sys.modules)}}
        open({str(tmp_path / "facts.json")!r}, "w").write(json.dumps(facts))
        """,
        python=OTHER_PYTHON,
    )
    out, facts = load_file(tmp_path / "out.safetensors"), json.loads((tmp_path / "facts.json").read_text())
    assert facts["transformers"] != transformers.__version__ and not facts["hf_prune_imported"]
    real = attention_mask.bool()  # what padding positions produce is undefined
    assert torch.allclose(out["logits"][real], logits[real], atol=1e-5)
    assert torch.equal(out["cached"], out["uncached"])
    assert torch.equal(out["cached"], expected)
