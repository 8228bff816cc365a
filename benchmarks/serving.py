"""Deployment speed in llama.cpp: prefill and decode tokens/s of dense SmolLM2-135M-Instruct and its pruned models.

Each pruned model is pruned at the quality suites' settings, written with `hf_prune.export.gguf.export_gguf` in the
format `save_pruned` would choose (stock `llama` for depth and uniform width, `deci` for per-layer widths), all at the
same weight type, and run in llama.cpp through llama-cpp-python on the same threads. Prefill is one batch of
`--prompt-tokens` WikiText-2 tokens into an empty cache; decode is `--decode-tokens` single tokens through the KV cache
after it. Every model is measured once per round, rounds interleaved, and the median round is reported, so that
background load on a small machine hits all models alike; speed-ups are ratios within this run.

    python benchmarks/serving.py                       # q8_0, 3 rounds
    python benchmarks/serving.py --outtype f16 --rounds 5

Results go to benchmarks/results/serving.json and .md with machine, date and command.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from results_io import command_line, write_results

import hf_prune
from hf_prune.calibration import load_calibration, load_text
from hf_prune.checkpoint.save import resolve_format
from hf_prune.evaluation import describe_machine, machine_summary
from hf_prune.export.gguf import export_gguf
from hf_prune.provenance import count_parameters
from hf_prune.scoring import PruningTarget, get_method

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (label, kind, method, target, options): the quality suites' settings.
PRUNED = [
    ("block-influence, 8 of 30 layers", "depth", "block-influence", PruningTarget(num_layers=8), {}),
    ("transact K=8, 25% width, uniform", "uniform width", "transact", PruningTarget(ratio=0.25), {"shots": 8}),
    ("transact K=8, 25% width, adaptive", "heterogeneous", "transact", PruningTarget(ratio=0.25),
     {"shots": 8, "allocation": "adaptive"}),
    ("llm-rank, 20% MLP", "MLP width", "llm-rank", PruningTarget(ratio=0.2), {}),
]


def measure(path: Path, prompt: list[int], decode_tokens: int, threads: int) -> dict:
    from llama_cpp import Llama

    runtime = Llama(model_path=str(path), n_ctx=len(prompt) + decode_tokens + 8, n_batch=len(prompt),
                    n_threads=threads, verbose=False)
    try:
        runtime.eval(prompt[:8])  # warm-up: first-call allocations are not what a server pays per request
        runtime.reset()
        started = time.perf_counter()
        runtime.eval(prompt)
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(decode_tokens):
            # Without logits_all, llama-cpp-python keeps no scores: read the last token's logits from the context.
            logits = np.ctypeslib.as_array(runtime._ctx.get_logits(), shape=(runtime.n_vocab(),))
            runtime.eval([int(logits.argmax())])
        decode = time.perf_counter() - started
    finally:
        runtime.close()
    return {"prefill_tokens_per_second": len(prompt) / prefill, "decode_tokens_per_second": decode_tokens / decode}


def markdown(results: dict) -> str:
    lines = [
        f"# llama.cpp serving speed ({results['date']})",
        "",
        f"Machine: {results['machine']}. llama-cpp-python {results['llama_cpp_python']}, {results['threads']} threads, "
        f"weights {results['outtype']}, prefill {results['prompt_tokens']} tokens, decode {results['decode_tokens']} "
        f"tokens, median of {results['rounds']} interleaved rounds.",
        f"Command: `{results['command']}`",
        "",
        "| model | kind | GGUF architecture | parameters | file | prefill tok/s | decode tok/s | prefill speed-up | "
        "decode speed-up | dense/pruned parameters |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    dense = results["rows"][0]
    for row in results["rows"]:
        lines.append(
            f"| {row['label']} | {row['kind']} | {row['architecture']} | {row['parameters'] / 1e6:.1f}M | "
            f"{row['file_bytes'] / 2**20:.0f} MiB | {row['prefill_tokens_per_second']:.0f} | "
            f"{row['decode_tokens_per_second']:.1f} | "
            f"{row['prefill_tokens_per_second'] / dense['prefill_tokens_per_second']:.2f}x | "
            f"{row['decode_tokens_per_second'] / dense['decode_tokens_per_second']:.2f}x | "
            f"{dense['parameters'] / row['parameters']:.2f}x |"
        )
    lines += ["", "Speed-ups are ratios to the dense model measured in the same run; the last column is what they "
              "would be if time were proportional to parameters (embeddings included). A q8_0 matrix needs rows "
              "that split into blocks of 32; an MLP width that does not (per-layer widths, or 80% of 1536) is "
              "written as f16 instead, which makes the file larger and prefill slower.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import importlib.metadata

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared/ folder")
    parser.add_argument("--outtype", default="q8_0", choices=("f32", "f16", "bf16", "q8_0"))
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = args.shared / "data" / "wikitext2_test_raw.txt"
    if not text.is_file():
        parser.error(f"{text} not found: the prompt is WikiText-2 text from ../shared/data (use --shared)")

    loaded = hf_prune.load_model("smollm2-135m")
    dense, tokenizer = loaded.model, loaded.tokenizer
    prompt = tokenizer(load_text(text).text[:20000]).input_ids[: args.prompt_tokens]
    calibration = load_calibration(tokenizer, num_samples=args.calibration_samples, seq_len=256)
    models = [("dense", "dense", dense)]
    for label, kind, method, target, options in PRUNED:
        print(f"pruning: {label}", flush=True)
        pruned = get_method(method, **options).prune(dense, calibration, target, batch_size=4,
                                                     progress=False).model
        models.append((label, kind, resolve_format(pruned, "auto")[0]))

    rows, timings = [], {}
    with tempfile.TemporaryDirectory() as directory:
        for index, (label, kind, model) in enumerate(models):
            written = export_gguf(model, Path(directory) / f"{index}.gguf", tokenizer=tokenizer, outtype=args.outtype)
            rows.append({"label": label, "kind": kind, "architecture": written.architecture,
                         "parameters": count_parameters(model), "file_bytes": written.path.stat().st_size,
                         "path": written.path})
        for round_index in range(args.rounds):
            for row in rows:
                timings.setdefault(row["label"], []).append(
                    measure(row["path"], prompt, args.decode_tokens, args.threads))
            print(f"round {round_index + 1}: " + ", ".join(
                f"{row['label']}: {timings[row['label']][-1]['decode_tokens_per_second']:.0f} tok/s" for row in rows),
                flush=True)
    for row in rows:
        del row["path"]
        for key in ("prefill_tokens_per_second", "decode_tokens_per_second"):
            row[key] = statistics.median(timing[key] for timing in timings[row["label"]])
            row[key.replace("tokens_per_second", "all_rounds")] = [timing[key] for timing in timings[row["label"]]]

    results = {
        "model": loaded.source, "machine": machine_summary(), "machine_details": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line(argv),
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"), "outtype": args.outtype,
        "threads": args.threads, "prompt_tokens": len(prompt), "decode_tokens": args.decode_tokens,
        "rounds": args.rounds, "rows": rows,
    }
    write_results(args.output, "serving", results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
