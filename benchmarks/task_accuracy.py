"""Zero-shot task accuracy (lm-evaluation-harness) of dense SmolLM2-135M-Instruct and of every method and baseline.

The pruned models are the healing benchmark's (`benchmarks/healing.py`: the quality suites' settings and the best
baseline of each suite), scored with `hf_prune.evaluation.tasks.evaluate_tasks` on the six tasks in
../shared/data/tasks, 0-shot, the first `--limit` items of each task (all with `--limit 0`). With `--heal-tokens N`,
Block Influence is also healed (LoRA r=16, N tokens) and scored again. Results go to
benchmarks/results/task_accuracy.json and .md with machine, date and command.

    python benchmarks/task_accuracy.py --limit 100 --heal-tokens 32768 --methods-only
    python benchmarks/task_accuracy.py --model gemma3-270m --limit 100      # results in task_accuracy-gemma3-270m
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

import hf_prune
from hf_prune.calibration import load_calibration
from hf_prune.evaluation import describe_machine, machine_summary
from hf_prune.evaluation.tasks import DEFAULT_TASKS, compare_tasks, evaluate_tasks, headline_metric
from hf_prune.healing import HealingConfig, heal_model
from hf_prune.healing.run import training_windows
from hf_prune.scoring import get_method

sys.path.insert(0, str(Path(__file__).resolve().parent))
from healing import PRUNED_BY_MODEL
from results_io import command_line, results_name, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Published zero-shot numbers of SmolLM2-135M-Instruct (model card; lighteval, length-normalised, chat template).
PUBLISHED = {"ARC (average of easy and challenge)": 37.3, "PIQA": 66.3, "HellaSwag": 40.9}


def markdown(results: dict) -> str:
    tasks = results["tasks"]
    lines = [
        "# task accuracy benchmark", "",
        f"Machine: {results['machine']}. Command: `{results['command']}`.", "",
        f"Model: {results['model']}, float32. lm-evaluation-harness {results['settings']['lm_eval_version']}, 0-shot, "
        + (f"the first {results['limit']} items of each task" if results["limit"] else "every item")
        + ", data from ../shared/data/tasks. Metric: acc_norm where the task has it, else acc (boolq, lambada_openai). "
        "Retention: model / dense. Standard errors (lm-eval's) are in the JSON; at 100 items they are about 0.05.", "",
        "| model | " + " | ".join(tasks) + " | mean | mean retention |",
        "|---|" + "---:|" * (len(tasks) + 2),
    ]
    for name, row in results["rows"].items():
        values = [row["tasks"][task][headline_metric(row["tasks"][task])] for task in tasks]
        retention = results["retention"].get(name)
        lines.append(f"| {name} | " + " | ".join(f"{100 * value:.1f}" for value in values)
                     + f" | {100 * sum(values) / len(values):.1f} | " + (f"{retention:.1%}" if retention else "") + " |")
    if "SmolLM2" not in results["model"]:
        return "\n".join(lines) + "\n"  # the published numbers below are SmolLM2's
    dense = results["rows"]["dense"]["tasks"]
    arc = [dense[task]["acc_norm"] for task in ("arc_easy", "arc_challenge") if task in dense]
    lines += ["", "Published for the dense model (lighteval, chat template): "
              + ", ".join(f"{name} {value}" for name, value in PUBLISHED.items())
              + (f". Here: ARC average {100 * sum(arc) / len(arc):.1f}" if len(arc) == 2 else "")
              + (f", PIQA {100 * dense['piqa']['acc_norm']:.1f}" if "piqa" in dense else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(PRUNED_BY_MODEL),
                        help="a built-in model (results: task_accuracy-<model> unless smollm2-135m)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    parser.add_argument("--limit", type=int, default=100, help="items per task (0: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heal-tokens", type=int, default=0, help="also heal Block Influence with LoRA on N tokens")
    parser.add_argument("--methods-only", action="store_true", help="skip the baselines")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    task_data = args.shared / "data" / "tasks"
    if not task_data.is_dir():
        parser.error(f"{task_data} not found (use --shared)")
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    limit = args.limit or None

    loaded = hf_prune.load_model(args.model)
    name = results_name("task_accuracy", args.model)
    teacher, tokenizer = loaded.model, loaded.tokenizer
    calibration = load_calibration(tokenizer, num_samples=32, seq_len=256)

    def score(model):
        started = time.perf_counter()
        result = evaluate_tasks(model, tokenizer, tasks, task_data=task_data, limit=limit, batch_size=args.batch_size)
        result["seconds"] = time.perf_counter() - started
        print(f"    {result['seconds']:.0f} s", {t: round(s[headline_metric(s)], 3) for t, s in result["tasks"].items()}, flush=True)
        return result

    print("dense", flush=True)
    rows = {"dense": score(teacher)}
    for pruned in PRUNED_BY_MODEL[args.model]:
        if args.methods_only and "baseline" in pruned.label:
            continue
        print(pruned.label, flush=True)
        method = get_method(pruned.method, **pruned.options)
        model = method.prune(teacher, calibration, pruned.target, batch_size=4, progress=False).model
        rows[pruned.label] = score(model)
        if args.heal_tokens and pruned.method == "block-influence":
            windows, _ = training_windows(tokenizer, HealingConfig(tokens=args.heal_tokens))
            config = HealingConfig(tokens=args.heal_tokens, lora=16)
            healed = heal_model(copy.deepcopy(model), teacher, windows, config, progress=False).model
            rows[f"{pruned.label}, healed (kd, LoRA r=16, {args.heal_tokens // 1024}k tokens)"] = score(healed)
    comparison = compare_tasks(rows)
    results = {
        "model": loaded.source, "machine": machine_summary(), "machine_details": describe_machine(),
        "command": command_line(argv),
        "limit": limit, "tasks": tasks, "settings": rows["dense"]["settings"], "rows": rows,
        "retention": comparison["average_retention"],
    }
    write_results(args.output, name, results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
