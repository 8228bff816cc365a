"""`hf-prune eval`: perplexity on fixed windows, zero-shot task accuracy through lm-eval (--tasks), and, with
--speed, inference speed and memory."""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from ..calibration.data import load_text, tokenize
from ..calibration.distributed import is_main_process
from ..errors import InvalidPruningError
from ..evaluation import count_parameters, kv_cache_bytes_per_token, measure_speed, perplexity
from ..evaluation.machine import describe_machine
from ..evaluation.tasks import evaluate_tasks, local_task_configs, parse_tasks
from .options import add_model_options, add_task_options
from .session import load


def register(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="measure perplexity, task accuracy (--tasks) and speed of a model or checkpoint",
        description="Perplexity over non-overlapping windows of a text. Windows start with BOS when the tokenizer "
        "adds BOS by default (then hold seq_len - 1 text tokens); otherwise they hold seq_len text tokens and the "
        "first is not predicted. With --tasks, zero-shot accuracy on lm-evaluation-harness tasks instead (add "
        "--text or --dataset to measure perplexity as well).",
    )
    parser.add_argument("model", metavar="MODEL_OR_DIR", help="Hub id, local directory, or a built-in model: smollm2-135m, gemma3-270m")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="FILE", help="a .txt or .jsonl file")
    source.add_argument("--dataset", metavar="NAME", help="wikitext2, c4, pg19 (online), or builtin-eval (default)")
    parser.add_argument("--seq-len", type=int, default=1024, metavar="T", help="window length (default: 1024)")
    parser.add_argument("--max-windows", type=int, default=None, metavar="K", help="only the first K windows")
    parser.add_argument("--batch-size", type=int, default=1, metavar="B", help="windows per forward pass")
    parser.add_argument("--speed", action="store_true", help="also measure prefill/decode speed and peak memory")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prompt length for --speed (default: 128)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded for --speed (default: 64)")
    add_task_options(parser)
    add_model_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.seq_len < 2:
        raise InvalidPruningError(f"--seq-len must be at least 2, got {args.seq_len}")
    if args.max_windows is not None and args.max_windows < 1:
        raise InvalidPruningError(f"--max-windows must be at least 1, got {args.max_windows}")
    tasks = parse_tasks(args.tasks) if args.tasks else None
    if tasks and args.task_data is not None:
        with tempfile.TemporaryDirectory() as directory:  # a missing file fails before the model loads
            local_task_configs(tasks, args.task_data, directory)
    wants_perplexity = not tasks or args.text or args.dataset
    text = load_text(args.text or args.dataset, "evaluation") if wants_perplexity else None
    loaded = load(args, require_supported=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    result = {"model": loaded.source}
    if text is not None:
        result.update(perplexity(
            model, tokenizer, text, seq_len=args.seq_len, max_windows=args.max_windows, batch_size=args.batch_size,
            progress=not args.quiet,
        ))
    if tasks:
        result["task_accuracy"] = evaluate_tasks(
            model, tokenizer, tasks, task_data=args.task_data, limit=args.limit, num_fewshot=args.num_fewshot,
            batch_size=args.batch_size,
        )
    result.update(
        parameters=count_parameters(model),
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(model.config, model.dtype),
        machine=describe_machine(),
    )
    if not is_main_process():
        return 0
    if args.speed:
        prompt_text = text.text if text is not None else load_text(None, "evaluation").text
        prompt = torch.tensor(tokenize(tokenizer, prompt_text)[: args.prompt_tokens])
        result.update(measure_speed(model, prompt, new_tokens=args.new_tokens))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if text is not None:
        print(f"{loaded.source}: perplexity {result['perplexity']:.4f} on {result['text']} "
              f"({result['windows']} windows x {result['seq_len']} tokens, {result['tokens']} predictions)")
    if tasks:
        print(task_table(result["task_accuracy"]))
    if args.speed:
        print(f"prefill {result['prefill_tokens_per_s']:.1f} tokens/s, decode {result['decode_tokens_per_s']:.1f} "
              f"tokens/s, peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB")
    return 0


def task_table(accuracy: dict) -> str:
    """lm-eval's numbers as a Markdown table: accuracy and length-normalised accuracy with standard errors."""
    def cell(scores: dict, metric: str) -> str:
        if metric not in scores:
            return "-"
        stderr = scores.get(f"{metric}_stderr")
        return f"{scores[metric]:.4f}" + (f" ± {stderr:.4f}" if isinstance(stderr, float) else "")

    settings = accuracy["settings"]
    lines = [f"lm-eval {settings['lm_eval_version']}, {settings['num_fewshot']}-shot"
             + (f", first {settings['limit']} items per task" if settings["limit"] else ""), "",
             "| task | items | acc | acc_norm |", "|---|---:|---:|---:|"]
    for task, scores in accuracy["tasks"].items():
        lines.append(f"| {task} | {scores['items']} | {cell(scores, 'acc')} | {cell(scores, 'acc_norm')} |")
    return "\n".join(lines)
