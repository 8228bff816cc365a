"""Helpers for tests that need a separate Python process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# Run in a fresh interpreter in which `import hf_prune` fails, so that whatever it loads works without hf_prune.
_WITHOUT_HF_PRUNE = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoHfPrune(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_prune" or name.startswith("hf_prune."):
                raise ImportError("hf_prune is deliberately unavailable in this process")
            return None

    sys.meta_path.insert(0, _NoHfPrune())
    """
)


def run_without_hf_prune(
    code: str,
    *,
    cwd: str | Path | None = None,
    env: dict | None = None,
    timeout: int = 600,
    python: str | Path | None = None,
):
    """Run `code` in a new Python process (this interpreter, or `python`) where hf_prune cannot be imported."""
    process_env = {**os.environ, **(env or {})}
    process = subprocess.run(
        [str(python or sys.executable), "-c", _WITHOUT_HF_PRUNE + textwrap.dedent(code)],
        cwd=cwd,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if process.returncode != 0:
        raise AssertionError(f"subprocess failed ({process.returncode}):\n{process.stdout}\n{process.stderr}")
    return process


def logits_in_fresh_process(
    checkpoint: str | Path, input_ids: torch.Tensor, work_dir: Path, trust_remote_code: bool
) -> tuple[torch.Tensor, dict]:
    """Load `checkpoint` with plain transformers in a process without hf_prune; return its logits and facts."""
    inputs, outputs, facts = work_dir / "inputs.safetensors", work_dir / "logits.safetensors", work_dir / "facts.json"
    save_file({"input_ids": input_ids.contiguous()}, inputs)
    run_without_hf_prune(
        f"""
        import json, sys, torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(checkpoint)!r}, trust_remote_code={trust_remote_code})
        input_ids = load_file({str(inputs)!r})["input_ids"]
        with torch.no_grad():
            logits = model(input_ids).logits
        save_file({{"logits": logits.contiguous()}}, {str(outputs)!r})
        facts = {{"class": type(model).__name__, "module": type(model).__module__,
                 "hf_prune_imported": any(m.startswith("hf_prune") for m in sys.modules)}}
        open({str(facts)!r}, "w").write(json.dumps(facts))
        """
    )
    return load_file(outputs)["logits"], json.loads(facts.read_text())
