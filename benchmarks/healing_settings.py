"""Which healing settings matter: one pruned model, one budget, one setting changed at a time.

SmolLM2-135M-Instruct loses 8 of its 30 layers to Block Influence (the healing benchmark's first row), then each row
heals a copy with `hf_prune.healing.heal_model` with `HealingConfig`'s defaults (all parameters, KL at temperature 1,
lr 3e-4, windows of 256 tokens in batches of 4, the built-in calibration split) except the settings it names, and
measures perplexity on the same fixed windows of WikiText-2 (test) and TinyStories as `benchmarks/healing.py`.
The intermediate-state rows add Minitron's loss on every layer's output (`intermediate_weight`), which its authors
recommend after deep depth pruning.

The data rows train on one of the evaluation texts after the windows it is evaluated on (so no evaluated token is
trained on), to tell how much the domain of the healing text matters: the built-in text is the Python Language
Reference, far from both evaluation texts. Their perplexity on the text they trained on is in-domain and not
comparable with the rest.

    python benchmarks/healing_settings.py                          # every row at 32k tokens
    python benchmarks/healing_settings.py --tokens 131072 --only "seq 1024"

Results go to benchmarks/results/healing_settings.json and .md, with machine, date and each row's command, after every
row; rows of a run with `--only` replace the rows of the same label and budget.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from healing import RESULTS, TEXTS, short_float
from results_io import command_line, selected, shared_data_dir, write_results

import hf_prune
from hf_prune.calibration import load_calibration, load_text
from hf_prune.calibration.data import adds_bos, token_windows, tokenize
from hf_prune.evaluation import describe_machine, evaluation_windows, machine_summary, windows_perplexity
from hf_prune.healing import HealingConfig, heal_model
from hf_prune.healing.run import training_windows
from hf_prune.scoring import PruningTarget, get_method

NAME = "healing_settings"
AFTER_EVALUATED = " (after its evaluated windows)"
# (label, HealingConfig fields that differ from the defaults); `data` names a training text below. Learning rates
# 1e-4 and 1e-3 and LoRA are compared at 32k and 128k tokens in benchmarks/healing.py.
ROWS = [
    ("defaults", {}),
    ("seq 1024, batch 1", {"seq_len": 1024, "batch_size": 1}),
    ("lr 5e-4", {"lr": 5e-4}),
    ("temperature 2", {"temperature": 2.0}),
    ("kd+ce", {"loss": "kd+ce"}),
    ("intermediate states x1", {"intermediate_weight": 1.0}),
    ("intermediate states x10", {"intermediate_weight": 10.0}),
    ("data: tinystories" + AFTER_EVALUATED, {"data": "tinystories"}),
    ("data: wikitext2" + AFTER_EVALUATED, {"data": "wikitext2"}),
]


def text_after(tokenizer, text: str, skip_tokens: int, seq_len: int) -> torch.Tensor:
    """Training windows of an evaluation text that start after its first `skip_tokens` tokens (the evaluated ones)."""
    bos = tokenizer.bos_token_id if adds_bos(tokenizer) else None
    return token_windows(tokenize(tokenizer, text)[skip_tokens:], seq_len, bos_token_id=bos)


def markdown(results: dict) -> str:
    dense, pruned = results["dense"], results["pruned"]
    # Rows merge across runs, so each row keeps the command that measured it.
    commands = ", ".join(f"`{command}`" for command in dict.fromkeys(row["command"] for row in results["rows"]))
    lines = [
        "# healing settings", "",
        f"Machine: {results['machine']}. Commands: {commands}.", "",
        f"Model: {results['model']}, float32, Block Influence with 8 of 30 layers removed. Each row heals it with "
        "`HealingConfig`'s defaults (all parameters, KL at temperature 1, lr 3e-4, cosine schedule with 5% warm-up, "
        "4 windows of 256 tokens a step, the built-in calibration split: the Python Language Reference) except what "
        f"the row names. Perplexity: the first {results['eval_windows']} windows of {results['eval_seq_len']} tokens "
        "of each text. Recovered: (pruned - healed) / (pruned - dense). The data rows train on the named evaluation text "
        "after its evaluated windows: their column for that text is in-domain. Heal min is wall time, comparable only "
        "between rows that ran on an otherwise idle machine.", "",
        f"Dense: WikiText-2 {dense['perplexity_wikitext2']:.2f}, TinyStories {dense['perplexity_tinystories']:.2f}. "
        f"Pruned, not healed: WikiText-2 {pruned['perplexity_wikitext2']:.2f}, "
        f"TinyStories {pruned['perplexity_tinystories']:.2f}.", "",
        "| settings | tokens | ppl wikitext2 | recovered | x dense | ppl tinystories | recovered | heal min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        cells = [row["settings"], f"{row['tokens']:,}"]
        for text in TEXTS:
            key = f"perplexity_{text}"
            share = (pruned[key] - row[key]) / (pruned[key] - dense[key])
            cells += [f"{row[key]:.2f}", f"{share:.0%}"]
            if text == "wikitext2":
                cells.append(f"{row[key] / dense[key]:.2f}")
        cells.append(f"{row['heal_seconds'] / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared",
                        help="the shared/ folder")
    parser.add_argument("--tokens", type=int, default=32_768, help="training tokens of every row")
    parser.add_argument("--only", default=None, help="run only the rows whose label contains one of these (a|b)")
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--eval-seq-len", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data_dir = shared_data_dir(parser, args.shared)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [(label, options) for label, options in ROWS if selected(label, args.only)]
    if not rows:
        parser.error(f"no row matches --only {args.only!r}")

    loaded = hf_prune.load_model("smollm2-135m")
    teacher, tokenizer = loaded.model, loaded.tokenizer
    texts = {name: load_text(data_dir / file) for name, file in TEXTS.items()}
    windows = {name: evaluation_windows(tokenizer, text, args.eval_seq_len, args.eval_windows) for name, text in texts.items()}

    def perplexities(model) -> dict:
        return {f"perplexity_{name}": windows_perplexity(model, value) for name, value in windows.items()}

    previous_path = args.output / f"{NAME}.json"
    previous = json.loads(previous_path.read_text()) if args.only and previous_path.is_file() else None
    results = {
        "model": loaded.source, "machine": machine_summary(), "machine_details": describe_machine(),
        "date": time.strftime("%Y-%m-%d"), "command": command_line(argv),
        "eval_windows": args.eval_windows, "eval_seq_len": args.eval_seq_len,
    }
    print("measuring the dense model", flush=True)
    results["dense"] = perplexities(teacher)
    calibration = load_calibration(tokenizer, num_samples=32, seq_len=256)
    model = get_method("block-influence").prune(teacher, calibration, PruningTarget(num_layers=8), batch_size=4,
                                                progress=False).model
    results["pruned"] = perplexities(model)
    kept = [row for row in (previous or {}).get("rows", [])
            if (row["settings"], row["tokens"]) not in {(label, args.tokens) for label, _ in rows}]
    results["rows"] = kept
    for label, options in rows:
        options = dict(options)
        seq_len = options.get("seq_len", 256)
        text = options.pop("data", None)
        if text:
            training = text_after(tokenizer, texts[text].text, windows[text].numel(), seq_len)
        else:
            training, _ = training_windows(tokenizer, HealingConfig(tokens=1, seq_len=seq_len))
        config = HealingConfig(tokens=args.tokens, **options)
        print(f"{label}: {args.tokens:,} tokens, lr {short_float(config.learning_rate)}", flush=True)
        started = time.perf_counter()
        # A copy: heal_model trains in place when the student shares nothing with the teacher.
        healed = heal_model(copy.deepcopy(model), teacher, training, config, progress=True).model
        row = {"settings": label, "tokens": args.tokens, "command": results["command"],
               "training_windows": int(training.shape[0]),
               "heal_seconds": time.perf_counter() - started, "config": config.to_dict(), **perplexities(healed)}
        print("   ", {key: round(value, 2) for key, value in row.items() if key.startswith("perplexity")}, flush=True)
        results["rows"].append(row)
        order = {name: index for index, (name, _) in enumerate(ROWS)}
        results["rows"].sort(key=lambda row: (row["tokens"], order.get(row["settings"], len(order))))
        write_results(args.output, NAME, results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
