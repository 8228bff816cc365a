"""`hf-prune demo`: the demo Space's Gradio app, run locally next to the model's source."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..checkpoint.load import BUILTIN_MODELS
from ..errors import MissingDependencyError, ModelNotFoundError
from ..hub.space import space_dir
from ..provenance import looks_like_hub_id


def register(commands) -> None:
    parser = commands.add_parser(
        "demo",
        help="try a pruned model next to its source in the demo Space's app, locally",
        description="Launch the Gradio app that `hf-prune push --space-id` publishes, on this machine: the same "
        "prompt goes to the pruned model and to its source, side by side, with speed, memory and the pruning profile. "
        "Needs gradio 6 (pip install 'hf-prune[space]').",
    )
    parser.add_argument("directory", metavar="DIR", help="pruned checkpoint directory (or a Hub id)")
    parser.add_argument(
        "--base",
        metavar="MODEL",
        default=None,
        help="model to compare with: Hub id, directory, smollm2-135m, or none (default: the checkpoint's source)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.set_defaults(run=run)


def load_space_app():
    """The app module of `spaces/` (it is the Space's `app_file`, so it is loaded from its file, not imported)."""
    if importlib.util.find_spec("gradio") is None:
        raise MissingDependencyError("hf-prune demo needs gradio 6: pip install 'hf-prune[space]'")
    spec = importlib.util.spec_from_file_location("hf_prune_space_app", space_dir() / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace, argv: list[str]) -> int:
    name = args.directory
    if not (Path(name).is_dir() or name in BUILTIN_MODELS or looks_like_hub_id(name)):
        raise ModelNotFoundError(f"{name} is neither a checkpoint directory nor a Hub id")
    app = load_space_app()
    demo = app.create_app(name, args.base)
    print(f"hf-prune demo: serving {name} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    demo.queue(max_size=32).launch(server_name=args.host, server_port=args.port, quiet=True)
    return 0
