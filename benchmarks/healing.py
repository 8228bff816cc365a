"""Healing by distillation: how much of what pruning lost comes back, for how many tokens, at what cost per token.

Each row prunes SmolLM2-135M-Instruct with a method at the settings of the quality suites (Block Influence 8 of 30
layers, TransAct K=8 at 25% of attention and MLP width, LLM-Rank at 20% of MLP neurons, and the best baseline of each
suite), heals it with `hf_prune.healing.heal_model` on the built-in calibration split (never the evaluation text), and
measures perplexity on the same fixed windows of WikiText-2 (test) and TinyStories as the quality suites. The dense
model is measured in the same run. Separately, the time of one distillation step is compared with one plain
next-token (cross-entropy) step on the same pruned model and batch, in the same process.

    python benchmarks/healing.py --budgets 0,32768 --healing kd         # every pruned model, 32k tokens
    python benchmarks/healing.py --only block-influence --budgets 32768 --healing lora --cost-steps 0
    python benchmarks/healing.py --only block-influence --budgets 131072 --healing kd --cost-steps 0
    python benchmarks/healing.py --only block-influence --budgets 32768 --healing kd --lr 3e-4 --cost-steps 0
    python benchmarks/healing.py --only "between shots" --budgets 0,32768 --healing kd --cost-steps 0
    python benchmarks/healing.py --model gemma3-270m --budgets 0,16384 --healing kd --lr 1e-4 --eval-windows 4 --cost-steps 0

`--model gemma3-270m` heals Gemma-3-270m with Block Influence's 4 of 18 layers removed (the public reference point)
and writes `healing-gemma3-270m`.

`--teacher-dtype` (default auto: bfloat16 where the CPU or GPU computes it natively) is recorded per row, and the
step-cost table times a float32 and a bfloat16 teacher against the plain next-token step.

"Recovered" is the share of the perplexity lost to pruning that healing won back: (pruned - healed) / (pruned - dense).
Results go to benchmarks/results/healing.json and .md with machine, date and command; `--only` re-runs merge into them.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from results_io import command_line, results_name, shared_data_dir, write_results

import hf_prune
from hf_prune.calibration import load_calibration, load_text
from hf_prune.evaluation import describe_machine, evaluation_windows, machine_summary, windows_perplexity
from hf_prune.healing import HealingConfig, ShotHealer, heal_model
from hf_prune.healing.run import training_windows
from hf_prune.healing.trainer import DistillationStudent, native_bfloat16
from hf_prune.scoring import PruningTarget, get_method

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEXTS = {"wikitext2": "wikitext2_test_raw.txt", "tinystories": "tinystories_val_prefix.txt"}


@dataclass
class Pruned:
    """A pruned model to heal: the quality suites' setting and, for baselines, the best baseline of that suite."""

    label: str
    method: str
    target: PruningTarget
    options: dict = field(default_factory=dict)
    heal_per_shot: int = 0  # tokens healed after every shot but the last (TransAct's reference trains there)


# The best baselines are the lowest WikiText-2 perplexity among each suite's baselines in benchmarks/results.
PRUNED = [
    Pruned("block-influence, 8 of 30 layers", "block-influence", PruningTarget(num_layers=8)),
    Pruned("random-layers seed 1, 8 of 30 layers (best depth baseline)", "random-layers", PruningTarget(num_layers=8), {"seed": 1}),
    Pruned("transact K=8, 25% width", "transact", PruningTarget(ratio=0.25), {"shots": 8}),
    Pruned("transact K=8, 25% width, 4k tokens healed between shots", "transact", PruningTarget(ratio=0.25),
           {"shots": 8}, heal_per_shot=4096),
    Pruned("activation, 25% width (best width baseline)", "activation", PruningTarget(ratio=0.25)),
    Pruned("llm-rank, 20% MLP", "llm-rank", PruningTarget(ratio=0.2)),
    Pruned("activation, 20% MLP (best MLP baseline)", "activation", PruningTarget(ratio=0.2), {"attention_ratio": 0.0}),
]
# Per built-in model other than SmolLM2: what its benchmark heals.
PRUNED_BY_MODEL = {
    "smollm2-135m": PRUNED,
    # Its best baselines by benchmarks/results/depth-gemma3-270m and transact-gemma3-270m.
    "gemma3-270m": [
        Pruned("block-influence, 4 of 18 layers", "block-influence", PruningTarget(num_layers=4)),
        Pruned("random-layers seed 0, 4 of 18 layers (best depth baseline)", "random-layers", PruningTarget(num_layers=4),
               {"seed": 0}),
        Pruned("transact K=4 adaptive, 25% width", "transact", PruningTarget(ratio=0.25), {"shots": 4, "allocation": "adaptive"}),
        Pruned("wanda-sp, 25% width (best width baseline)", "wanda-sp", PruningTarget(ratio=0.25)),
    ],
}


def variants(budgets: list[int], kinds: list[str], lora_rank: int, lr: float | None = None) -> list[tuple[str, dict]]:
    """(label, HealingConfig options) of each way to heal; budget 0 is the pruned model itself."""
    options = {"kd": {}, "lora": {"lora": lora_rank}, "ce": {"loss": "ce"}}
    options = {kind: {**value, "lr": lr or HealingConfig(tokens=1, **value).learning_rate} for kind, value in options.items()}
    names = {"kd": "kd, all parameters", "lora": f"kd, LoRA r={lora_rank}", "ce": "ce, all parameters"}
    rows = []
    for tokens in budgets:
        if tokens == 0:
            rows.append(("not healed", {}))
            continue
        rows += [
            (f"{names[kind]}, {tokens // 1024}k tokens, lr {short_float(options[kind]['lr'])}", {"tokens": tokens, **options[kind]})
            for kind in kinds
        ]
    return rows


def short_float(value: float) -> str:
    """3e-4, not 3.000000e-04: how learning rates read in labels."""
    return f"{value:.0e}".replace("e-0", "e-")


def step_costs(model, teacher, windows: torch.Tensor, steps: int, args) -> dict[str, float]:
    """Median seconds of one training step (teacher forward, student forward and backward, AdamW) of each way to
    train: plain next-token loss, and distillation from a float32 and (where native) a bfloat16 teacher.

    The ways take turns step by step, each on its own copy of `model`, so a busy machine slows them alike; one
    warm-up round is not timed.
    """
    import statistics

    ways = {"ce": ("ce", None), "kd, float32 teacher": ("kd", torch.float32)}
    if native_bfloat16(torch.device("cpu")):
        ways["kd, bfloat16 teacher"] = ("kd", torch.bfloat16)
    runs = {}
    for name, (loss, dtype) in ways.items():
        wrapper = DistillationStudent(copy.deepcopy(model).train(), HealingConfig(steps=steps, seq_len=args.seq_len,
                                                                                  batch_size=args.batch_size, loss=loss))
        optimizer = torch.optim.AdamW([p for p in wrapper.parameters() if p.requires_grad], lr=1e-5)
        runs[name] = (wrapper, optimizer, copy.deepcopy(teacher).to(dtype) if dtype is not None else None)
    times = {name: [] for name in ways}
    for step in range(steps + 1):
        batch = windows[step * args.batch_size:(step + 1) * args.batch_size]
        for name, (wrapper, optimizer, step_teacher) in runs.items():
            started = time.perf_counter()
            teacher_hidden = teacher_head = None
            if step_teacher is not None:
                with torch.no_grad():
                    teacher_hidden = step_teacher.get_decoder()(input_ids=batch, use_cache=False).last_hidden_state
                teacher_head = step_teacher.get_output_embeddings()
            wrapper(batch, teacher_hidden, teacher_head).backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def teacher_of(row: dict) -> str:
    """The teacher's dtype of a healed row ("" for an unhealed one); rows from before the option had float32."""
    return row.get("teacher_dtype", "float32") if row["tokens"] else ""


def merge_rerun(previous: dict, rerun: dict) -> dict:
    """Add the rows of a run with `--only`: a row that replaces an earlier measurement is marked as re-run."""
    def key(row: dict) -> tuple:
        return row["pruned"], row["healing"], teacher_of(row)

    fresh = {key(row) for row in rerun["rows"]}
    existing = {key(row) for row in previous["rows"]}
    rows = [row for row in previous["rows"] if key(row) not in fresh]
    for row in rerun["rows"]:
        replaced = key(row) in existing
        rows.append({**row, "rerun": f"{rerun['machine']}"} if replaced else row)
    order = {pruned.label: index for index, pruned in enumerate(p for ps in PRUNED_BY_MODEL.values() for p in ps)}
    rows.sort(key=lambda row: (order.get(row["pruned"], len(order)), row["tokens"], row["healing"], teacher_of(row)))
    merged = {**previous, "rows": rows}
    if "step_cost" in rerun:
        merged["step_cost"] = rerun["step_cost"]
    return merged


def recovered(dense: float, pruned: float, healed: float) -> float | None:
    return (pruned - healed) / (pruned - dense) if pruned > dense else None


def markdown(results: dict) -> str:
    dense = results["dense"]
    lines = [
        "# healing benchmark", "",
        f"Machine: {results['machine']}. Command: `{results['command']}`.", "",
        f"Model: {results['model']}, float32. Healing: `hf_prune.healing.heal_model` on the built-in calibration split "
        f"({results['training_windows']} windows of {results['seq_len']} tokens; a budget above "
        f"{results['training_windows'] * results['seq_len']:,} tokens repeats it), batch {results['batch_size']}, "
        "AdamW, cosine schedule with 5% warm-up, peak learning rate as labelled, KL at temperature 1. "
        f"Perplexity: the first {results['eval_windows']} windows of {results['eval_seq_len']} tokens of each text, "
        "the same windows as the quality suites. Recovered: (pruned - healed) / (pruned - dense).", "",
        f"Dense: WikiText-2 {dense['perplexity_wikitext2']:.2f}, TinyStories {dense['perplexity_tinystories']:.2f}.", "",
    ]
    cost = results.get("step_cost")
    if cost:
        seconds = cost.get("seconds") or {"ce": cost["ce_seconds"], "kd, float32 teacher": cost["kd_seconds"]}
        lines += [
            "## Cost of a distillation step", "",
            f"One step (teacher forward, student forward and backward, AdamW) of {cost['batch_size']} x "
            f"{cost['seq_len']} tokens on {cost['pruned']}; the ways take turns step by step, median of {cost['steps']} "
            f"after a warm-up round. Distillation is the fused chunked KL over the {cost['vocab']:,}-token vocabulary.", "",
            "| training step | seconds | vs plain next-token loss |", "|---|---:|---:|",
        ]
        lines += [f"| {name} | {value:.2f} | {value / seconds['ce']:.2f}x |" for name, value in seconds.items()]
        lines.append("")
    lines += [
        "## Perplexity after healing", "",
        "| pruned model | healing | teacher | tokens | ppl wikitext2 | recovered | ppl tinystories | recovered | heal min | tok/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    unhealed = {row["pruned"]: row for row in results["rows"] if row["tokens"] == 0}
    for row in results["rows"]:
        base = unhealed.get(row["pruned"])
        cells = [row["pruned"], row["healing"] + (" *" if "rerun" in row else ""), teacher_of(row), f"{row['tokens']:,}"]
        for text in TEXTS:
            value = row[f"perplexity_{text}"]
            share = recovered(dense[f"perplexity_{text}"], base[f"perplexity_{text}"], value) if base and row["tokens"] else None
            cells += [f"{value:.2f}", f"{share:.0%}" if share is not None else ""]
        cells += [f"{row['heal_seconds'] / 60:.1f}" if row["tokens"] else "",
                  f"{row['tokens_per_second']:.0f}" if row["tokens"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    for row in results["rows"]:
        if row.get("shot_heal_tokens") and not row["tokens"]:
            at = f" at lr {short_float(row['shot_heal_lr'])}" if "shot_heal_lr" in row else ""
            lines += ["", f"{row['pruned']}: {row['shot_heal_tokens']:,} tokens healed between shots{at} in "
                          f"{row['shot_heal_seconds'] / 60:.1f} min (pruning and healing {row['prune_seconds'] / 60:.1f} min); "
                          "its 32k row heals that model further."]
    reruns = sorted({row["rerun"] for row in results["rows"] if "rerun" in row})
    if reruns:
        lines += ["", "\\* re-run with `--only` on " + "; ".join(reruns) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared/ folder")
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(PRUNED_BY_MODEL),
                        help="a built-in model (results: healing-<model> unless smollm2-135m)")
    parser.add_argument("--budgets", default="0,32768,131072", help="training tokens per row, comma-separated")
    parser.add_argument("--healing", default="kd,lora", help="ways to heal: kd (all parameters), lora, ce (default: kd,lora)")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--only", default=None, help="heal only the pruned models whose label contains this")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--eval-seq-len", type=int, default=1024)
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of every row (default: HealingConfig's)")
    parser.add_argument("--teacher-dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="the teacher's dtype while healing (default: auto, bfloat16 where native)")
    parser.add_argument("--cost-steps", type=int, default=3, help="timed steps for the step-cost comparison (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data_dir = shared_data_dir(parser, args.shared)
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = [int(value) for value in args.budgets.split(",")]

    loaded = hf_prune.load_model(args.model)
    name = results_name("healing", args.model)
    teacher, tokenizer = loaded.model, loaded.tokenizer
    windows = {name: evaluation_windows(tokenizer, load_text(data_dir / file), args.eval_seq_len, args.eval_windows)
               for name, file in TEXTS.items()}
    calibration = load_calibration(tokenizer, num_samples=args.calibration_samples, seq_len=256)
    training, source = training_windows(tokenizer, HealingConfig(tokens=1, seq_len=args.seq_len))

    def perplexities(model) -> dict:
        return {f"perplexity_{name}": windows_perplexity(model, value) for name, value in windows.items()}

    results = {
        "model": loaded.source, "machine": machine_summary(), "machine_details": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line(argv),
        "seq_len": args.seq_len, "batch_size": args.batch_size, "training_windows": int(training.shape[0]),
        "training_source": source, "eval_windows": args.eval_windows, "eval_seq_len": args.eval_seq_len,
    }
    print("measuring the dense model", flush=True)
    results["dense"] = perplexities(teacher)
    rows = []
    for pruned in PRUNED_BY_MODEL[args.model]:
        if args.only and args.only not in pruned.label:
            continue
        print(f"pruning: {pruned.label}", flush=True)
        method = get_method(pruned.method, **pruned.options)
        between_shots = None
        if pruned.heal_per_shot:
            between_shots = ShotHealer(teacher, training, HealingConfig(tokens=pruned.heal_per_shot, seq_len=args.seq_len,
                                       batch_size=args.batch_size, teacher_dtype=args.teacher_dtype, lr=args.lr),
                                       progress=False)
        started = time.perf_counter()
        shots = {"between_shots": between_shots} if between_shots is not None else {}
        model = method.prune(teacher, calibration, pruned.target, batch_size=4, progress=False, **shots).model
        pruning_seconds = time.perf_counter() - started
        if args.cost_steps and "step_cost" not in results:
            costs = step_costs(model, teacher, training, args.cost_steps, args)
            results["step_cost"] = {"pruned": pruned.label, "steps": args.cost_steps, "seq_len": args.seq_len,
                                    "batch_size": args.batch_size, "vocab": teacher.config.vocab_size, "seconds": costs}
            print("step cost:", {name: round(value, 2) for name, value in costs.items()}, flush=True)
        for label, options in variants(budgets, args.healing.split(","), args.lora_rank, args.lr):
            print(f"  {label}", flush=True)
            row = {"pruned": pruned.label, "healing": label, "tokens": options.get("tokens", 0)}
            if between_shots is not None:
                row["shot_heal_tokens"] = sum(run["tokens"] for run in between_shots.runs)
                row["shot_heal_seconds"] = sum(run["wall_seconds"] for run in between_shots.runs)
                row["shot_heal_lr"] = between_shots.config.learning_rate
                row["prune_seconds"] = pruning_seconds
            if options:
                config = HealingConfig(seq_len=args.seq_len, batch_size=args.batch_size,
                                       teacher_dtype=args.teacher_dtype, **options)
                started = time.perf_counter()
                # A copy: heal_model trains in place when the student shares nothing with the teacher.
                result = heal_model(copy.deepcopy(model), teacher, training, config, progress=True)
                healed = result.model
                row["heal_seconds"] = time.perf_counter() - started
                row["teacher_dtype"] = result.facts["teacher_dtype"]
                row["tokens_per_second"] = row["tokens"] / row["heal_seconds"]
                row.update(perplexities(healed))
            else:
                row.update(perplexities(model))
            print("   ", {key: round(value, 2) for key, value in row.items() if key.startswith("perplexity")}, flush=True)
            rows.append(row)
    results["rows"] = rows
    previous = args.output / f"{name}.json"
    if args.only and previous.is_file():
        results = merge_rerun(json.loads(previous.read_text()), results)
    write_results(args.output, name, results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
