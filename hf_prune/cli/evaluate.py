"""`hf-prune eval`: perplexity on fixed windows and, with --speed, inference speed and memory."""

from __future__ import annotations

import argparse
import json

import torch

from ..calibration.data import load_text, tokenize
from ..calibration.distributed import is_main_process
from ..errors import InvalidPruningError
from ..evaluation import count_parameters, kv_cache_bytes_per_token, measure_speed, perplexity
from ..evaluation.machine import describe_machine
from .options import add_model_options
from .session import load


def register(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="measure perplexity (and speed) of a model or checkpoint",
        description="Perplexity over non-overlapping windows of a text. Windows start with BOS when the tokenizer "
        "adds BOS by default (then hold seq_len - 1 text tokens); otherwise they hold seq_len text tokens and the "
        "first is not predicted.",
    )
    parser.add_argument("model", metavar="MODEL_OR_DIR", help="Hub id, local directory, or smollm2-135m")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="FILE", help="a .txt or .jsonl file")
    source.add_argument("--dataset", metavar="NAME", help="wikitext2, c4, pg19 (online), or builtin-eval (default)")
    parser.add_argument("--seq-len", type=int, default=1024, metavar="T", help="window length (default: 1024)")
    parser.add_argument("--max-windows", type=int, default=None, metavar="K", help="only the first K windows")
    parser.add_argument("--batch-size", type=int, default=1, metavar="B", help="windows per forward pass")
    parser.add_argument("--speed", action="store_true", help="also measure prefill/decode speed and peak memory")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prompt length for --speed (default: 128)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded for --speed (default: 64)")
    add_model_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.seq_len < 2:
        raise InvalidPruningError(f"--seq-len must be at least 2, got {args.seq_len}")
    if args.max_windows is not None and args.max_windows < 1:
        raise InvalidPruningError(f"--max-windows must be at least 1, got {args.max_windows}")
    text = load_text(args.text or args.dataset, "evaluation")
    loaded = load(args, require_supported=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    result = perplexity(
        model, tokenizer, text, seq_len=args.seq_len, max_windows=args.max_windows, batch_size=args.batch_size,
        progress=not args.quiet,
    )
    result.update(
        model=loaded.source,
        parameters=count_parameters(model),
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(model.config, model.dtype),
        machine=describe_machine(),
    )
    if not is_main_process():
        return 0
    if args.speed:
        prompt = torch.tensor(tokenize(tokenizer, text.text)[: args.prompt_tokens])
        result.update(measure_speed(model, prompt, new_tokens=args.new_tokens))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{loaded.source}: perplexity {result['perplexity']:.4f} on {result['text']} "
              f"({result['windows']} windows x {result['seq_len']} tokens, {result['tokens']} predictions)")
        if args.speed:
            print(f"prefill {result['prefill_tokens_per_s']:.1f} tokens/s, decode {result['decode_tokens_per_s']:.1f} "
                  f"tokens/s, peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB")
    return 0
