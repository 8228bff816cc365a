"""Memory and time of scoring: in memory, layer streaming, and two processes, as the model grows.

Each measurement runs `hf-prune score --method block-influence` in a fresh process (two for torchrun) and samples
the resident set size of the process tree every 5 ms. "Above baseline" subtracts the resident size of an identical
process that has imported torch, transformers and hf_prune but loaded nothing, so it counts what scoring costs.

Models: SmolLM2-135M (the built-in checkpoint, float32 safetensors) and synthetic Llama-shaped checkpoints with random
weights (hidden 2048, 16 query / 4 KV heads, MLP 5504, vocabulary 49152: SmolLM2's tokenizer) of 2, 4 and 8 layers, written by this script.

    python benchmarks/calibration_scale.py            # writes benchmarks/results/calibration_scale.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from results_io import command_line, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SYNTHETIC = dict(
    hidden_size=2048, intermediate_size=5504, num_attention_heads=16, num_key_value_heads=4, vocab_size=49152,
    max_position_embeddings=2048, tie_word_embeddings=True,
)


def write_synthetic_checkpoint(directory: Path, num_layers: int) -> int:
    """A Llama-shaped checkpoint of random weights, written tensor by tensor (never whole in memory)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(num_hidden_layers=num_layers, **SYNTHETIC)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(num_layers)
    weight_map, shard, shard_bytes, shards, total = {}, {}, 0, 0, 0

    def flush():
        nonlocal shard, shard_bytes, shards
        name = f"model-{shards:05d}.safetensors"
        save_file(shard, directory / name, metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
        shard, shard_bytes, shards = {}, 0, shards + 1

    for name, parameter in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        tensor = torch.ones(parameter.shape) if "norm" in name else torch.randn(parameter.shape, generator=generator) * 0.02
        shard[name] = tensor
        shard_bytes += tensor.numel() * 4
        total += tensor.numel() * 4
        if shard_bytes > 400 * 2**20:
            flush()
    if shard:
        flush()
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    config.save_pretrained(directory)
    # The calibration text is tokenized by SmolLM2's tokenizer, whose vocabulary the synthetic model shares.
    from hf_prune.checkpoint import builtin_checkpoint

    AutoTokenizer.from_pretrained(builtin_checkpoint("smollm2-135m")).save_pretrained(directory)
    return total


def measure(command: list[str], env: dict | None = None) -> dict:
    """Run a command; return its wall time and the peak resident memory of its whole process tree."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    peak, done = 0, threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()[-3000:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_bytes": peak}


def baseline(processes: int) -> int:
    """Resident size of `processes` idle processes that imported everything scoring imports."""
    code = "import torch, transformers, hf_prune, hf_prune.cli, time; time.sleep(2)"
    command = [sys.executable, "-c", code]
    if processes == 1:
        return measure(command)["peak_rss_bytes"]
    return sum(measure(command)["peak_rss_bytes"] for _ in range(processes))


def score_command(model: str, mode: str, output: Path, samples: int, seq_len: int) -> list[str]:
    score = ["score", model, "--method", "block-influence", "--num-samples", str(samples), "--seq-len", str(seq_len),
             "--batch-size", "4", "--quiet", "--overwrite", "--output", str(output)]
    if mode == "streaming":
        return [sys.executable, "-m", "hf_prune", *score, "--stream"]
    if mode == "2 processes":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hf_prune", *score]
    return [sys.executable, "-m", "hf_prune", *score]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8], help="synthetic model depths")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from hf_prune.checkpoint import builtin_checkpoint
    from hf_prune.evaluation import describe_machine, machine_summary

    base = {1: baseline(1), 2: baseline(2)}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        models = [("SmolLM2-135M", str(builtin_checkpoint("smollm2-135m")), None)]
        for layers in args.layers:
            path = scratch / f"synthetic-{layers}"
            size = write_synthetic_checkpoint(path, layers)
            models.append((f"synthetic Llama, {layers} layers", str(path), size))
        for name, path, size in models:
            weights = size or sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
            scores = {}
            for mode in ("in memory", "streaming", "2 processes"):
                output = scratch / f"{len(rows)}.json"
                print(f"{name}: {mode}", flush=True)
                env = {"OMP_NUM_THREADS": "1"} if mode == "2 processes" else {}
                result = measure(score_command(path, mode, output, args.samples, args.seq_len), env)
                processes = 2 if mode == "2 processes" else 1
                scores[mode] = json.loads(output.read_text())["layer_scores"]
                rows.append(
                    {
                        "model": name,
                        "weights_bytes": weights,
                        "mode": mode,
                        "seconds": result["seconds"],
                        "peak_rss_bytes": result["peak_rss_bytes"],
                        "above_baseline_bytes": result["peak_rss_bytes"] - base[processes],
                    }
                )
            reference = scores["in memory"]
            for mode in ("streaming", "2 processes"):
                difference = max(abs(a - b) / abs(a) for a, b in zip(reference, scores[mode]))
                next(r for r in rows if r["model"] == name and r["mode"] == mode)["max_relative_score_difference"] = difference

    results = {
        "machine": machine_summary(),
        "machine_details": describe_machine(),
        "command": command_line(argv),
        "calibration": {"samples": args.samples, "seq_len": args.seq_len, "batch_size": 4},
        "baseline_rss_bytes": {"one_process": base[1], "two_processes": base[2]},
        "rows": rows,
    }
    write_results(args.output, "calibration_scale", results, markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    mib = 2**20
    lines = [
        "# Calibration at scale: memory and time of `hf-prune score --method block-influence`",
        "",
        f"Machine: {results['machine']}. Command: `{results['command']}`. Calibration: "
        f"{results['calibration']['samples']} windows x {results['calibration']['seq_len']} tokens, batch 4. Peak resident "
        "memory of the process tree, sampled every 5 ms; above baseline = minus idle processes that imported the same "
        f"libraries ({results['baseline_rss_bytes']['one_process'] / mib:.0f} MiB for one process).",
        "",
        "| model | weights | mode | seconds | peak RSS | above baseline | vs in memory | max score diff |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    in_memory = {row["model"]: row["above_baseline_bytes"] for row in results["rows"] if row["mode"] == "in memory"}
    for row in results["rows"]:
        ratio = row["above_baseline_bytes"] / in_memory[row["model"]]
        diff = row.get("max_relative_score_difference")
        lines.append(
            f"| {row['model']} | {row['weights_bytes'] / mib:.0f} MiB | {row['mode']} | {row['seconds']:.1f} | "
            f"{row['peak_rss_bytes'] / mib:.0f} MiB | {row['above_baseline_bytes'] / mib:.0f} MiB | {ratio:.0%} | "
            f"{'' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
