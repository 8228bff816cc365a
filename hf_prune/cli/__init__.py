"""The `hf-prune` command line: `prune`, `heal`, `score`, `eval`, `push`, `demo`, `export` (see `hf-prune COMMAND --help`).

Exit status is 0 on success and 2 on bad input, which is reported as one line on stderr
(`hf-prune: error: ...`); anything unexpected exits 1 with the same one line unless `HF_PRUNE_DEBUG=1` asks for the
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from huggingface_hub.errors import StrictDataclassError

from .. import __version__
from ..calibration.distributed import finish_processes
from ..errors import HfPruneError, PrunedCheckpointError, PrunedConfigError
from . import demo, evaluate, export, heal, prune, push, score

BAD_INPUT = 2
FAILURE = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (the full usage stays in --help)."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="hf-prune",
        description="Make a Hugging Face causal LM smaller without training: score layers, heads and neurons on "
        "calibration text, remove the least important physically, save a checkpoint that loads anywhere.",
    )
    parser.add_argument("--version", action="version", version=f"hf-prune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for module in (prune, heal, score, evaluate, push, demo, export):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (the `hf-prune` console script exits with it)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    status = FAILURE
    try:
        status = args.run(args, argv) or 0
        return status
    except (HfPruneError, PrunedConfigError, PrunedCheckpointError) as error:
        print(f"hf-prune: error: {error}", file=sys.stderr)
        return BAD_INPUT
    except StrictDataclassError as error:
        print(f"hf-prune: error: {error.__cause__ or error}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("hf-prune: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence keeps the one-line contract
        if os.environ.get("HF_PRUNE_DEBUG"):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"hf-prune: error: {type(error).__name__}: {first} (HF_PRUNE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return FAILURE
    finally:
        finish_processes(success=status == 0)


def console_main() -> None:
    sys.exit(main())
