"""`hf-prune export`: a pruned checkpoint to ONNX with a KV cache, checked against PyTorch."""

from __future__ import annotations

import argparse
import json

import torch

from ..checkpoint import load_model
from ..errors import FormatError


def register(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a (pruned) checkpoint to ONNX with a KV cache",
        description="Export DIR (any format, including heterogeneous per-layer widths) to ONNX prefill and decode "
        "graphs with transformers' ONNX exporter, then check them on ONNX Runtime against PyTorch: logits on a "
        "prompt and greedy tokens. Needs hf-prune[onnx].",
    )
    parser.add_argument("model", metavar="DIR", help="checkpoint directory (or a Hub id, or smollm2-135m)")
    parser.add_argument("--output", required=True, metavar="OUT", help="directory to write (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it is not empty")
    parser.add_argument("--check-tokens", type=int, default=16, metavar="N", help="greedy tokens compared (default: 16; 0 skips)")
    parser.add_argument("--json", action="store_true", help="print the check as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..checkpoint.save import check_output_dir
    from ..export.onnx import export_onnx, load_onnx, require_onnx

    require_onnx()
    check_output_dir(args.output, args.overwrite)
    loaded = load_model(args.model, require_supported=False)
    export_onnx(loaded.model, args.output, tokenizer=loaded.tokenizer, record_from=args.model, overwrite=args.overwrite)
    report = {"output": args.output}
    if args.check_tokens:
        prompt = loaded.tokenizer("The pruned model and the exported one agree on", return_tensors="pt").input_ids
        generator = load_onnx(args.output)
        with torch.no_grad():
            expected = loaded.model(prompt).logits
            reference = loaded.model.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.check_tokens, do_sample=False
            )
        report["max_abs_logit_difference"] = float((generator(prompt) - expected).abs().max())
        generation = loaded.model.generation_config
        tokens = generator.generate(
            prompt, args.check_tokens, eos_token_id=generation.eos_token_id, pad_token_id=generation.pad_token_id
        )
        report["greedy_tokens_equal"] = bool(torch.equal(tokens, reference))
        report["checked_tokens"] = args.check_tokens
        if not report["greedy_tokens_equal"]:
            raise FormatError(
                f"the ONNX export in {args.output} generates different greedy tokens than PyTorch "
                f"(max logit difference {report['max_abs_logit_difference']:.2e})"
            )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        line = f"exported {args.model} to ONNX in {args.output}"
        if args.check_tokens:
            line += (
                f"; on ONNX Runtime: max logit difference {report['max_abs_logit_difference']:.1e}, "
                f"{args.check_tokens} greedy tokens identical to PyTorch"
            )
        print(line)
    return 0
