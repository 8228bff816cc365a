"""What every benchmark script shares: the command that ran it, its results as JSON and Markdown side by side, and
the command-line checks they all make (the shared data folder, `--only` alternatives)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def command_line(argv: list[str] | None) -> str:
    """The command as a user would retype it: the script's path and its arguments (`argv`, else the process's)."""
    return "python " + shlex.join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])


def results_name(benchmark: str, model: str) -> str:
    """The results file stem of a benchmark run on a built-in model: SmolLM2's keep the bare name."""
    return benchmark if model == "smollm2-135m" else f"{benchmark}-{model}"


def write_results(directory: Path, name: str, results: dict, markdown: str) -> None:
    """Write `name.json` (everything measured) and `name.md` (the tables the README quotes) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / f"{name}.md").write_text(markdown)


def shared_data_dir(parser: argparse.ArgumentParser, shared: Path) -> Path:
    """`shared/data`, the evaluation texts, or a usage error naming the folder that is missing."""
    data_dir = shared / "data"
    if not data_dir.is_dir():
        parser.error(f"{data_dir} not found: the benchmark evaluates on ../shared/data (use --shared)")
    return data_dir


def selected(label: str, only: str | None) -> bool:
    """Whether `--only` keeps the row `label`: no filter, or one of its `|`-separated parts is in the label."""
    return not only or any(part in label for part in only.split("|"))
