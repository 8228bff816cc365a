"""`hf-prune heal`: distil a pruned checkpoint from its source model; options come from `HealingConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex

from ..healing import HealingConfig, heal
from .options import add_field_flag


def add_healing_options(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """One flag per `HealingConfig` field (`--tokens`, `--lora`, ...), or `--heal-tokens`, ... with `prefix="heal-"`."""
    group = parser.add_argument_group("healing")
    for field in dataclasses.fields(HealingConfig):
        flag = "--" + prefix + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: {field.default})"
        add_field_flag(group, HealingConfig, field, flag, f"heal_{field.name}", help_text)


def healing_config(args: argparse.Namespace, **overrides) -> HealingConfig:
    """The `HealingConfig` of the healing flags given, with `overrides` (a `None` override drops that flag)."""
    options = {key.removeprefix("heal_"): value for key, value in vars(args).items() if key.startswith("heal_") and value is not None}
    options.update(overrides)
    return HealingConfig(**{key: value for key, value in options.items() if value is not None})


def register(commands) -> None:
    parser = commands.add_parser(
        "heal",
        help="distil a pruned checkpoint from the model it was pruned from",
        description="Heal a pruned checkpoint: train it to match its source model's token distributions (logit "
        "distillation) on ordinary text, all parameters or LoRA, then write it in the same format with the run in "
        "pruning.json. Runs as is, or as several data-parallel processes under torchrun / accelerate launch.",
    )
    parser.add_argument("checkpoint", metavar="DIR", help="a checkpoint written by hf-prune prune")
    parser.add_argument("--output", required=True, metavar="OUT", help="where to write the healed checkpoint")
    parser.add_argument("--teacher", metavar="MODEL", help="the teacher (default: the source model in pruning.json)")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from OUT.healing/")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--json", action="store_true", help="print the healing record as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_healing_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..calibration.distributed import is_main_process

    record = heal(
        args.checkpoint, args.output, healing_config(args), teacher=args.teacher, overwrite=args.overwrite,
        resume=args.resume, progress=not args.quiet, command=shlex.join(["hf-prune", *argv]),
    )
    if not is_main_process():
        return 0
    healing = record.healing
    if args.json:
        print(json.dumps(healing, indent=2))
    else:
        before, after = healing["held_out_perplexity_before"], healing["held_out_perplexity_after"]
        print(f"healed {args.checkpoint} on {healing['tokens']:,} tokens in {healing['steps']} steps "
              f"({healing['wall_seconds'] / 60:.1f} min, {healing['tokens_per_second']:,.0f} tokens/s)")
        if before is not None:
            print(f"held-out perplexity: {before:.3f} (pruned) -> {after:.3f} (healed)")
        print(f"wrote {record.format} checkpoint to {args.output}")
    return 0
