"""Options several commands share, and the method options generated from the method config dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

import torch

from ..errors import InvalidPruningError
from ..scoring import METHODS, MethodConfig, PruningTarget, get_method_config

# Options every method config may have but that come from a general flag instead.
_GENERAL = {"seed"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model loading")
    group.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="weights dtype (default: float32)")
    group.add_argument("--device", default=None, help="device to run on: cpu, cuda, cuda:1 (default: cuda if available)")
    group.add_argument("--device-map", default=None, help="spread a large model with accelerate (e.g. auto)")
    group.add_argument("--revision", default=None, help="Hub revision of MODEL")


def add_stream_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stream",
        action="store_true",
        help="keep the weights on disk and hold one decoder layer in memory at a time (models larger than memory; "
        "MODEL must be safetensors: a directory, a Hub id, or smollm2-135m)",
    )


def add_calibration_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("calibration")
    group.add_argument(
        "--calibration",
        metavar="SRC",
        default=None,
        help="a .txt/.jsonl file, a Hub dataset (wikitext2, c4, pg19), or builtin (default: the offline built-in text)",
    )
    group.add_argument("--num-samples", type=int, default=64, metavar="N", help="calibration windows (default: 64)")
    group.add_argument("--seq-len", type=int, default=256, metavar="T", help="tokens per window (default: 256)")
    group.add_argument("--batch-size", type=int, default=1, metavar="B", help="windows per forward pass (default: 1)")
    group.add_argument(
        "--seed", type=int, default=None, metavar="S", help="draw windows at random with this seed (default: the first N)"
    )


def add_method_options(parser: argparse.ArgumentParser, *, with_target: bool = True) -> None:
    parser.add_argument("--method", required=True, choices=list(METHODS), metavar="METHOD", help=", ".join(METHODS))
    if with_target:
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--ratio", type=float, metavar="R", help="fraction to remove, in (0, 1)")
        target.add_argument("--num-layers", type=int, metavar="N", help="layers to remove (depth methods)")
    group = parser.add_argument_group("method options (each applies to the methods that have it)")
    seen: dict[str, Any] = {}
    for config_class in METHODS.values():
        for field in dataclasses.fields(config_class):
            if field.name in _GENERAL or field.name in seen:
                continue
            seen[field.name] = config_class.method
            flag = "--" + field.name.replace("_", "-")
            users = ", ".join(c.method for c in METHODS.values() if field.name in c.__dataclass_fields__)
            help_text = f"{field.metadata.get('help', '')} [{users}; default: {field.default}]"
            add_field_flag(group, config_class, field, flag, f"method_{field.name}", help_text)


def add_field_flag(group, config_class, field: dataclasses.Field, flag: str, dest: str, help_text: str) -> None:
    """A flag for one field of a config dataclass, typed from its annotation; `None` when not given."""
    kind = typing.get_type_hints(config_class)[field.name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # `float | None`: the flag takes a float
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        group.add_argument(flag, dest=dest, action="store_true", default=None, help=help_text)
    elif typing.get_origin(kind) is typing.Literal:
        group.add_argument(flag, dest=dest, choices=typing.get_args(kind), help=help_text)
    else:
        group.add_argument(flag, dest=dest, type=kind, metavar=kind.__name__.upper(), help=help_text)


def method_config(args: argparse.Namespace) -> MethodConfig:
    """The chosen method's config from the parsed flags; a flag the method does not have is an error."""
    config_class = METHODS[args.method]
    options = {}
    for key, value in vars(args).items():
        if not key.startswith("method_") or value is None:
            continue
        name = key.removeprefix("method_")
        if name not in config_class.__dataclass_fields__:
            raise InvalidPruningError(f"--{name.replace('_', '-')} does not apply to --method {args.method}")
        options[name] = value
    if "seed" in config_class.__dataclass_fields__ and args.seed is not None:
        options["seed"] = args.seed
    return get_method_config(args.method, **options)


def pruning_target(args: argparse.Namespace, config: MethodConfig) -> PruningTarget | None:
    """The target from --ratio / --num-layers; width methods may instead size themselves with method options."""
    if args.ratio is None and args.num_layers is None:
        if config.kind == "width":
            return None
        raise InvalidPruningError("say how much to remove with --ratio R or --num-layers N")
    if args.num_layers is not None and config.kind != "depth":
        raise InvalidPruningError(f"--num-layers applies to depth methods; {config.method} takes --ratio")
    return PruningTarget(num_layers=args.num_layers, ratio=args.ratio)


def check_calibration_sizes(args: argparse.Namespace) -> None:
    for flag, value, least in (("--num-samples", args.num_samples, 1), ("--seq-len", args.seq_len, 2), ("--batch-size", args.batch_size, 1)):
        if value < least:
            raise InvalidPruningError(f"{flag} must be at least {least}, got {value}")


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def add_task_options(parser: argparse.ArgumentParser, *, batch_size: bool = False) -> None:
    """Zero-shot task accuracy through lm-evaluation-harness (needs hf-prune[eval])."""
    group = parser.add_argument_group("task accuracy (lm-evaluation-harness; needs hf-prune[eval])")
    group.add_argument(
        "--tasks",
        metavar="T1,T2",
        help="lm-eval tasks, comma-separated, or default (arc_easy,arc_challenge,piqa,boolq,openbookqa,lambada_openai)",
    )
    group.add_argument(
        "--task-data",
        metavar="DIR",
        help="read the tasks' data from local files in the Hugging Face schema (<task>_<split>.jsonl, as in "
        "shared/data/tasks) instead of downloading it",
    )
    group.add_argument("--limit", type=int, metavar="N", help="score only the first N items of each task (quick looks)")
    group.add_argument("--num-fewshot", type=int, default=None, metavar="K", help="in-context examples (default: 0)")
    if batch_size:
        group.add_argument("--task-batch-size", type=int, default=1, metavar="B", help="lm-eval batch size (default: 1)")
