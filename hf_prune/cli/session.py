"""The steps `prune` and `score` share, ordered so that bad input fails before any weight is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from ..calibration.data import CalibrationData, Text, load_calibration, load_text
from ..checkpoint import LoadedModel, download_checkpoint, load_model, load_streamed, load_tokenizer, resolve_model
from ..errors import InvalidPruningError
from ..scoring import MethodConfig, PruningTarget
from .options import DTYPES, pruning_target, resolve_device


def target_if_given(args: argparse.Namespace, config: MethodConfig) -> PruningTarget | None:
    if args.ratio is None and args.num_layers is None:
        return None
    return pruning_target(args, config)


def calibration_text(args: argparse.Namespace, config: MethodConfig) -> Text | None:
    """Read the calibration text (or fail on a missing file) before anything heavy happens."""
    if not config.needs_calibration:
        return None
    return load_text(args.calibration, "calibration", max_chars=args.num_samples * args.seq_len * 8)


def calibration_windows(
    args: argparse.Namespace, text: Text | None, tokenizer: PreTrainedTokenizerBase
) -> CalibrationData | None:
    if text is None:
        return None
    return load_calibration(
        tokenizer, text, num_samples=args.num_samples, seq_len=args.seq_len, seed=args.seed
    )


def load(args: argparse.Namespace, require_supported: bool = True, tokenizer=None) -> LoadedModel:
    """Load MODEL with the loading flags, on the requested device (or leave its weights on disk with --stream)."""
    if getattr(args, "stream", False):
        return load_for_streaming(args, tokenizer)
    loaded = load_model(
        args.model,
        dtype=DTYPES[args.dtype],
        device_map=args.device_map,
        revision=args.revision,
        require_supported=require_supported,
        tokenizer=tokenizer,
    )
    if args.device_map is None:
        loaded.model.to(resolve_device(args.device))
    return loaded


def load_for_streaming(args: argparse.Namespace, tokenizer=None) -> LoadedModel:
    if args.device_map is not None:
        raise InvalidPruningError("--stream and --device-map are two ways to fit a large model; choose one")
    directory, source, license = resolve_model(args.model, revision=args.revision)
    if not isinstance(directory, Path):
        directory = Path(download_checkpoint(directory, revision=args.revision))
    dtype = None if args.dtype == "auto" else DTYPES[args.dtype]
    model = load_streamed(directory, dtype=dtype, device=resolve_device(args.device))
    model.name_or_path = source
    tokenizer = tokenizer or load_tokenizer(args.model, revision=args.revision)
    return LoadedModel(model=model, tokenizer=tokenizer, source=source, license=license)


def prepare(args: argparse.Namespace, config: MethodConfig) -> tuple[CalibrationData | None, LoadedModel]:
    """Calibration windows and the loaded model, in the order that fails fastest on bad input."""
    text = calibration_text(args, config)
    tokenizer = load_tokenizer(args.model, revision=args.revision)
    data = calibration_windows(args, text, tokenizer)
    return data, load(args, tokenizer=tokenizer)
