"""`hf-prune export`: a pruned checkpoint to ONNX (with a KV cache, checked on ONNX Runtime) or to GGUF (llama.cpp)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from ..checkpoint import load_model
from ..errors import FormatError


def register(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a (pruned) checkpoint to ONNX with a KV cache, or to GGUF for llama.cpp",
        description="Export DIR (any format, including heterogeneous per-layer widths). --format onnx (the default) "
        "writes ONNX prefill and decode graphs with transformers' ONNX exporter and checks them on ONNX Runtime "
        "against PyTorch (needs hf-prune[onnx]). --format gguf writes one GGUF file for llama.cpp with the gguf "
        "package (needs hf-prune[gguf]): stock checkpoints as their own architecture, heterogeneous ones as 'deci' "
        "with per-layer head counts and MLP widths; when llama-cpp-python is installed it checks greedy tokens in "
        "llama.cpp against PyTorch.",
    )
    parser.add_argument("model", metavar="DIR", help="checkpoint directory (or a Hub id, or smollm2-135m / gemma3-270m)")
    parser.add_argument("--format", choices=("onnx", "gguf"), default="onnx", help="what to write (default: onnx)")
    parser.add_argument(
        "--output", required=True, metavar="OUT", help="ONNX: a directory to write (new or empty); GGUF: the .gguf file"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--outtype", choices=("f32", "f16", "bf16", "q8_0"), default="f16", help="GGUF weight type (default: f16)"
    )
    parser.add_argument(
        "--pre-tokenizer", metavar="NAME", help="GGUF: llama.cpp's pre-tokenizer name, for a byte-level BPE tokenizer "
        "hf-prune does not recognise (it recognises GPT-2's and SmolLM's)"
    )
    parser.add_argument("--check-tokens", type=int, default=16, metavar="N", help="greedy tokens compared (default: 16; 0 skips)")
    parser.add_argument("--json", action="store_true", help="print the check as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.format == "gguf":
        return run_gguf(args)
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


CHECK_PROMPT = "The pruned model and the exported one agree on"


def run_gguf(args: argparse.Namespace) -> int:
    import importlib.util

    from ..errors import LlamaCppError, OutputExistsError
    from ..export.gguf import export_gguf, llama_cpp_greedy, require_gguf

    require_gguf()
    # export_gguf checks this too; checking first spares loading the model only to refuse.
    if os.path.exists(args.output) and not args.overwrite:
        raise OutputExistsError(f"{args.output} exists; pass --overwrite to replace it")
    loaded = load_model(args.model, require_supported=False)
    written = export_gguf(
        loaded.model,
        args.output,
        tokenizer=loaded.tokenizer,
        outtype=args.outtype,
        pre_tokenizer=args.pre_tokenizer,
        overwrite=args.overwrite,
    )
    report = {"output": args.output, "architecture": written.architecture, "outtype": written.outtype, "notes": written.notes}
    checked = bool(args.check_tokens) and importlib.util.find_spec("llama_cpp") is not None
    crash = None
    if checked:
        prompt = loaded.tokenizer(CHECK_PROMPT).input_ids
        try:
            tokens, _ = llama_cpp_greedy(written.path, prompt, args.check_tokens)
        except LlamaCppError as error:
            # The file is complete; llama.cpp itself failed on it (on this machine), which the user must hear about.
            crash, checked = str(error), False
            report.update(greedy_tokens_equal=None, llama_cpp_error=crash)
    if checked:
        with torch.no_grad():
            reference = loaded.model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=args.check_tokens,
                do_sample=False,
                use_cache=getattr(loaded.model, "can_generate_with_cache", lambda: True)(),
            )[0, len(prompt) :].tolist()
        agree = next((index for index, (ours, theirs) in enumerate(zip(tokens, reference)) if ours != theirs), None)
        report["greedy_tokens_equal"] = agree is None
        report["checked_tokens"] = args.check_tokens
        if agree is not None and written.outtype == "f32":
            os.remove(written.path)
            raise FormatError(
                f"llama.cpp generates different greedy tokens than PyTorch from token {agree} on; nothing was kept"
            )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    line = f"exported {args.model} to {args.output} (GGUF, {written.architecture}, {written.outtype})"
    if checked:
        line += (
            f"; in llama.cpp {args.check_tokens} greedy tokens "
            + ("identical to PyTorch" if report["greedy_tokens_equal"] else f"differ from PyTorch ({written.outtype} rounding)")
        )
    elif crash:
        line += "; not checked"
    elif args.check_tokens:
        line += "; not run in llama.cpp (pip install llama-cpp-python to check it)"
    print(line)
    if crash:
        print(f"warning: {crash}", file=sys.stderr)
    for note in written.notes:
        print(f"note: {note}")
    return 0
