"""`hf-prune score`: compute a method's importance scores and write them to a JSON file."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from ..calibration.distributed import is_main_process
from ..errors import OutputExistsError
from ..scoring import build_method
from .options import (
    add_calibration_options,
    add_method_options,
    add_model_options,
    add_stream_option,
    check_calibration_sizes,
    method_config,
)
from .session import prepare, target_if_given


def register(commands) -> None:
    parser = commands.add_parser(
        "score",
        help="compute importance scores and write them as JSON",
        description="Score the layers, heads or neurons of MODEL with METHOD on calibration text; write scores.json.",
    )
    parser.add_argument("model", metavar="MODEL", help="Hub id, local directory, or a built-in model: smollm2-135m, gemma3-270m")
    add_method_options(parser)
    add_calibration_options(parser)
    add_model_options(parser)
    add_stream_option(parser)
    parser.add_argument("--output", required=True, metavar="FILE", help="where to write the scores (JSON)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def write_json_atomically(path: Path, data: dict, overwrite: bool) -> None:
    """Write JSON to a temporary file beside `path`, then rename: a reader never sees half a file."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; choose another file or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, argv: list[str]) -> int:
    config = method_config(args)
    target = target_if_given(args, config)
    check_calibration_sizes(args)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputExistsError(f"{output} exists; choose another file or pass --overwrite")
    data, loaded = prepare(args, config)
    scores = build_method(config).score(loaded.model, data, target, batch_size=args.batch_size, progress=not args.quiet)
    if not is_main_process():
        return 0  # every process holds the same scores; one writes
    result = {
        **scores.to_dict(),
        "model": loaded.source,
        "settings": config.to_dict(),
        "calibration": data.provenance() if data is not None else None,
    }
    write_json_atomically(output, result, args.overwrite)
    print(f"wrote {output}")
    return 0
