"""`hf-prune prune`: score, remove, optionally evaluate dense versus pruned, and write the checkpoint."""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import tempfile
import time

from ..calibration.distributed import is_main_process
from ..checkpoint import FORMATS, as_layer_source, check_output_dir, save_pruned
from ..errors import InvalidPruningError
from ..evaluation import compare_models
from ..evaluation.tasks import compare_tasks, evaluate_tasks, local_task_configs, parse_tasks, require_lm_eval
from ..healing import HealingConfig
from ..provenance import (
    CURVE_NAME,
    PROFILE_NAME,
    PruningRecord,
    healing_curve_png,
    healing_report,
    human_bytes,
    human_count,
    render_report,
)
from ..quantization import WEIGHT_TYPES, quantize_weights, require_quanto
from ..scoring import build_method
from .heal import add_healing_options, healing_config
from .options import (
    add_calibration_options,
    add_method_options,
    add_model_options,
    add_stream_option,
    add_task_options,
    check_calibration_sizes,
    method_config,
    pruning_target,
)
from .session import prepare


def register(commands) -> None:
    parser = commands.add_parser(
        "prune",
        help="prune a model and write the checkpoint, model card and report",
        description="Score MODEL with METHOD, physically remove the least important layers/heads/neurons, and "
        "write a checkpoint that loads with AutoModelForCausalLM.from_pretrained, with pruning.json, a model card "
        "(README.md) and a run report (report.md).",
    )
    parser.add_argument("model", metavar="MODEL", help="Hub id, local directory, or a built-in model: smollm2-135m, gemma3-270m")
    add_method_options(parser)
    add_calibration_options(parser)
    add_model_options(parser)
    add_stream_option(parser)
    parser.add_argument("--format", choices=FORMATS, default="auto", help="checkpoint format (default: auto)")
    parser.add_argument(
        "--quantize",
        choices=sorted(WEIGHT_TYPES),
        default=None,
        help="after pruning, quantize the weights (optimum-quanto, weight-only; needs hf-prune[quant]); "
        "--evaluate then measures the quantized model",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="directory to write (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it is not empty")
    evaluation = parser.add_argument_group("evaluation of dense versus pruned, in the same run")
    evaluation.add_argument("--evaluate", action="store_true", help="measure perplexity of both models")
    evaluation.add_argument(
        "--eval-text",
        action="append",
        metavar="SRC",
        help="text to evaluate on (repeatable): a file, wikitext2, or builtin-eval (default: builtin-eval)",
    )
    evaluation.add_argument("--eval-seq-len", type=int, default=1024, metavar="T", help="window length (default: 1024)")
    evaluation.add_argument("--eval-max-windows", type=int, default=16, metavar="K", help="windows per text (default: 16)")
    evaluation.add_argument("--speed", action="store_true", help="also measure prefill/decode speed and peak memory")
    add_task_options(parser, batch_size=True)
    add_healing_options(parser, prefix="heal-")
    parser.add_argument(
        "--heal-tokens-per-shot",
        dest="shot_heal_tokens",
        type=int,
        metavar="N",
        help="heal N tokens between the pruning shots of an iterative method (TransAct, --shots 2 or more), with the "
        "other --heal-* settings, as TransAct's reference trains between shots",
    )
    parser.add_argument("--json", action="store_true", help="print the pruning record as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def wants_healing(args: argparse.Namespace) -> bool:
    return args.heal_tokens is not None or args.heal_steps is not None


def shot_healing_config(args: argparse.Namespace, config) -> HealingConfig | None:
    """The healing settings of each heal between shots: the --heal-* options with --heal-tokens-per-shot as budget."""
    if args.shot_heal_tokens is None:
        return None
    if getattr(config, "shots", 1) < 2:
        raise InvalidPruningError(
            "--heal-tokens-per-shot heals between pruning shots: use --method transact with --shots 2 or more"
        )
    return healing_config(args, tokens=args.shot_heal_tokens, steps=None)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    config = method_config(args)
    target = pruning_target(args, config)
    check_calibration_sizes(args)
    check_output_dir(args.output, args.overwrite)
    if args.stream and (args.evaluate or args.speed or args.eval_text or args.tasks):
        raise InvalidPruningError(
            "--stream keeps the model on disk, so it cannot be evaluated in the same run; "
            "evaluate the written checkpoint with hf-prune eval"
        )
    if args.quantize and args.stream:
        raise InvalidPruningError("--quantize needs the pruned model in memory; it cannot be combined with --stream")
    if args.quantize:
        require_quanto()  # before any work is done
    if (wants_healing(args) or args.shot_heal_tokens is not None) and args.stream:
        raise InvalidPruningError("healing needs the pruned model in memory; it cannot be combined with --stream")
    heal_config = healing_config(args) if wants_healing(args) else None  # bad healing options fail before any work
    shot_config = shot_healing_config(args, config)
    tasks = parse_tasks(args.tasks) if args.tasks else None
    if tasks:
        require_lm_eval()
        if args.task_data is not None:
            with tempfile.TemporaryDirectory() as directory:  # a missing task file fails before any work
                local_task_configs(tasks, args.task_data, directory)
    progress = not args.quiet
    timings: dict[str, float] = {}

    started = time.perf_counter()
    data, loaded = prepare(args, config)
    timings["load model and calibration text"] = time.perf_counter() - started

    started = time.perf_counter()
    shot_healer = None
    if shot_config is not None:
        from ..calibration.data import load_text
        from ..healing import ShotHealer
        from ..healing.run import training_windows

        shot_windows, shot_data_source = training_windows(loaded.tokenizer, shot_config)
        shot_healer = ShotHealer(loaded.model, shot_windows, shot_config, tokenizer=loaded.tokenizer,
                                 eval_text=load_text(shot_config.eval_text, "evaluation"), progress=progress)
        result = build_method(config).prune(
            loaded.model, data, target, batch_size=args.batch_size, progress=progress, between_shots=shot_healer
        )
        result.scores.extra["shot_healing"] = shot_healer.provenance(loaded.source, shot_data_source)
    else:
        result = build_method(config).prune(loaded.model, data, target, batch_size=args.batch_size, progress=progress)
    timings["score and remove" + (" (healing between shots)" if shot_healer else "")] = time.perf_counter() - started

    evaluation = {}
    if args.evaluate or args.speed or args.eval_text:
        started = time.perf_counter()
        # With --quantize, what is measured is what is written: the pruned model with quantized weights.
        evaluated = quantize_weights(copy.deepcopy(result.model), args.quantize) if args.quantize else result.model
        evaluation = compare_models(
            loaded.model,
            evaluated,
            loaded.tokenizer,
            args.eval_text or [None],
            seq_len=args.eval_seq_len,
            max_windows=args.eval_max_windows,
            speed=args.speed,
            progress=progress,
        )
        timings["evaluate dense and pruned"] = time.perf_counter() - started

    task_results = {}
    if tasks:
        started = time.perf_counter()
        evaluated = quantize_weights(copy.deepcopy(result.model), args.quantize) if args.quantize else result.model
        for name, model in (("dense", loaded.model), ("pruned", evaluated)):
            task_results[name] = measure_tasks(model, loaded.tokenizer, tasks, args)
        evaluation["tasks"] = compare_tasks(task_results)
        timings["task accuracy, dense and pruned"] = time.perf_counter() - started

    healing = None
    if heal_config is not None:
        from ..calibration.data import load_text
        from ..evaluation import perplexity
        from ..healing.run import training_windows
        from ..healing.trainer import heal_model

        started = time.perf_counter()
        windows, data_source = training_windows(loaded.tokenizer, heal_config)
        healed = heal_model(
            result.model, loaded.model, windows, heal_config, tokenizer=loaded.tokenizer,
            eval_text=load_text(heal_config.eval_text, "evaluation"), progress=progress,
        )
        result.model, healing = healed.model, (healed, data_source)
        timings["heal"] = time.perf_counter() - started
        if evaluation.get("perplexity"):  # dense and pruned were measured above; the healed model on the same windows
            started = time.perf_counter()
            for entry in evaluation["perplexity"]:
                entry["healed"] = perplexity(
                    result.model, loaded.tokenizer, load_text(entry["text"], "evaluation"), seq_len=args.eval_seq_len,
                    max_windows=args.eval_max_windows, progress=progress,
                )["perplexity"]
            timings["evaluate healed"] = time.perf_counter() - started
        if tasks:
            started = time.perf_counter()
            task_results["healed"] = measure_tasks(result.model, loaded.tokenizer, tasks, args)
            evaluation["tasks"] = compare_tasks(task_results)
            timings["task accuracy, healed"] = time.perf_counter() - started

    if not is_main_process():
        return 0  # every process scored and pruned the same way; one writes
    record = PruningRecord.from_model(
        as_layer_source(result.model).structure,  # with --stream, the skeleton: the pruned shapes and what they kept
        method=config.method,
        source_model=loaded.source,
        calibration=data.provenance() if data is not None else None,
        scores=result.scores.to_dict(),
        citation=config.paper,
        settings=config.to_dict(),
        target=target.to_dict() if target is not None else None,
        evaluation=evaluation,
        license=loaded.license,
        command=shlex.join(["hf-prune", *argv]),
    )
    extra_files = {"report.md": lambda final: render_report(final.to_dict(), timings)}
    if healing is not None:
        from ..healing.run import with_healing

        healed, data_source = healing
        record = with_healing(record, healed, loaded.source, data_source, heal_config)
        extra_files = {
            "report.md": lambda final: render_report(final.to_dict(), timings) + "\n" + healing_report(final.healing),
            CURVE_NAME: lambda final: healing_curve_png(final.healing),
        }
    save_pruned(
        result.model,
        args.output,
        format=args.format,
        tokenizer=loaded.tokenizer,
        record=record,
        extra_files=extra_files,
        overwrite=args.overwrite,
        quantize=args.quantize,
    )

    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print(summary(record, args.output))
    return 0


def measure_tasks(model, tokenizer, tasks: list[str], args: argparse.Namespace) -> dict:
    return evaluate_tasks(model, tokenizer, tasks, task_data=args.task_data, limit=args.limit,
                          num_fewshot=args.num_fewshot, batch_size=args.task_batch_size)


def summary(record: PruningRecord, output: str) -> str:
    lines = [
        f"{record.method}: {human_count(record.params_before)} -> {human_count(record.params_after)} parameters, "
        f"{record.layers_before} -> {record.layers_after} layers, KV cache "
        f"{human_bytes(record.kv_cache_bytes_per_token_before)} -> {human_bytes(record.kv_cache_bytes_per_token_after)}"
        " per token",
    ]
    if record.removed_layers:
        lines.append(f"removed layers: {', '.join(map(str, record.removed_layers))}")
    for entry in record.evaluation.get("perplexity", []):
        healed = f" -> {entry['healed']:.3f} (healed)" if "healed" in entry else ""
        lines.append(f"perplexity on {entry['text']}: {entry['dense']:.3f} (dense) -> {entry['pruned']:.3f} (pruned){healed}")
    shot_healing = (record.scores or {}).get("shot_healing")
    if shot_healing:
        tokens = sum(run["tokens"] for run in shot_healing["shots"])
        lines.append(f"healed between shots: {len(shot_healing['shots'])} x {shot_healing['shots'][0]['tokens']:,} tokens "
                     f"({tokens:,} in all)")
    if record.healing:
        lines.append(
            f"healed on {record.healing['tokens']:,} tokens in {record.healing['steps']} steps "
            f"({record.healing['wall_seconds'] / 60:.1f} min, {record.healing['tokens_per_second']:,.0f} tokens/s)"
        )
    tasks = record.evaluation.get("tasks")
    if tasks:
        for name, value in tasks["average_retention"].items():
            if value is not None:
                lines.append(f"task accuracy retained ({name} / dense, mean over {len(tasks['tasks'])} tasks): {value:.1%}")
    speed = record.evaluation.get("speed")
    if speed:
        lines.append(
            f"decode tokens/s: {speed['dense']['decode_tokens_per_s']:.1f} (dense) -> "
            f"{speed['pruned']['decode_tokens_per_s']:.1f} (pruned)"
        )
    lines.append(f"wrote {record.format} checkpoint, pruning.json, README.md, report.md and {PROFILE_NAME} to {output}")
    return "\n".join(lines)
