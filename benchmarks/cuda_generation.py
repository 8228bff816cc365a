"""Generation of the pruned format on a GPU: bf16, eager and sdpa attention, dynamic and static caches, device_map.

A check, not a speed benchmark: what the CPU tests prove in float32 (cached greedy equals uncached greedy with left
padding, a padded row generates what it generates alone, static cache equals dynamic cache), here on CUDA in
bfloat16, for a heterogeneous model of every family (random weights) and for the real stories260k pruned by hand,
saved in the pruned format and reloaded with `device_map="auto"`. Run it once for each transformers release to cover;
it writes `results/cuda_generation-<transformers version>.{json,md}` with the machine and date.

    python benchmarks/cuda_generation.py [--shared ../shared] [--output benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hf_prune  # noqa: E402
from hf_prune.evaluation.machine import describe_machine, machine_summary  # noqa: E402

# Six query heads in three KV groups; Mistral and Qwen2 slide over 5 tokens so the sliding cache is exercised.
TINY = dict(vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=4, num_attention_heads=6,
            num_key_value_heads=3, max_position_embeddings=256, pad_token_id=0)
FAMILIES = {
    "llama": dict(model_type="llama", head_dim=8, attention_bias=True, mlp_bias=True),
    "mistral": dict(model_type="mistral", head_dim=8, sliding_window=5),
    "qwen2": dict(model_type="qwen2", use_sliding_window=True, sliding_window=5, max_window_layers=2),
    "qwen3": dict(model_type="qwen3", head_dim=10),
}
# Every layer different: fewer KV groups, thinner groups, narrower heads, no attention, no MLP.
PLAN = dict(heads={0: [0, 1, 4, 5], 1: [0, 2, 4], 3: []}, neurons={1: list(range(0, 64, 2)), 2: []})


def tiny_model(family: str, pruned: bool = True) -> torch.nn.Module:
    options = dict(FAMILIES[family])
    config = AutoConfig.for_model(options.pop("model_type"), **TINY, **options)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.uniform_(0.5, 1.5) if "norm" in name else parameter.normal_(0.0, 0.3)
    if not pruned:
        return model
    head_pairs = model.model.layers[0].self_attn.head_dim // 2
    plan = hf_prune.PruningPlan(**PLAN, rotary_pairs={2: list(range(0, head_pairs, 2))})
    return hf_prune.apply_plan(hf_prune.to_pruned(model), plan)


def padded_batch(vocab_size: int, device) -> dict:
    input_ids = torch.randint(1, vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, :4], attention_mask[1, :4] = 0, 0
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def checks(model, batch, new_tokens: int = 12) -> dict:
    def greedy(inputs, **kwargs):
        return model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0, **kwargs)

    pads = int((batch["attention_mask"][1] == 0).sum())  # left padding of the second row
    alone = {key: value[1:, pads:] for key, value in batch.items()}
    prompt = batch["input_ids"].shape[1]
    cached, uncached = greedy(batch, use_cache=True), greedy(batch, use_cache=False)
    return {
        "cached_equals_uncached": torch.equal(cached, uncached),
        "static_equals_dynamic": torch.equal(greedy(batch, cache_implementation="static"), cached),
        "padded_row_equals_alone": torch.equal(cached[1, prompt:], greedy(alone)[0, alone["input_ids"].shape[1]:]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--device", default="cuda", help="cuda (bfloat16), or cpu (float32) for a dry run")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("needs a CUDA GPU (or --device cpu for a dry run)")
    device, rows = torch.device(args.device), []
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # The stock model of each family runs the same checks: where bfloat16 rounding flips a near-tie of the random
    # weights, the stock model shows it too, and the pruned format is held to the same standard, plus float32.
    variants = [(False, dtype), (True, dtype)] + ([(True, torch.float32)] if dtype != torch.float32 else [])
    for family in FAMILIES:
        for pruned, precision in variants:
            for attention in ("eager", "sdpa"):
                model = tiny_model(family, pruned).to(device, precision)
                model.set_attn_implementation(attention)
                name = f"tiny {family} ({'pruned, heterogeneous' if pruned else 'stock'})"
                rows.append({"model": name, "attention": attention, "dtype": str(precision).removeprefix("torch."),
                             **checks(model, padded_batch(96, device))})
                print(rows[-1], flush=True)
    stories = args.shared / "models" / "stories260k"
    if stories.is_dir():
        loaded = hf_prune.load_model(str(stories))
        pruned = hf_prune.apply_plan(loaded.model, hf_prune.PruningPlan(
            heads={1: [0, 1, 4, 5], 2: [0, 1, 2, 3, 4, 5, 6, 7][:4]}, neurons={3: list(range(96))}))
        with tempfile.TemporaryDirectory() as directory:
            hf_prune.save_pruned(pruned, directory, tokenizer=loaded.tokenizer)
            reloaded = AutoModelForCausalLM.from_pretrained(directory, device_map=device.type if device.type == "cpu" else "auto", dtype=dtype)
            tokenizer = loaded.tokenizer
            tokenizer.padding_side, tokenizer.pad_token = "left", tokenizer.pad_token or tokenizer.unk_token
            batch = tokenizer(["Once upon a time there was", "A dog"], return_tensors="pt", padding=True).to(device)
            for attention in ("eager", "sdpa"):
                reloaded.set_attn_implementation(attention)
                result = checks(reloaded, dict(batch), new_tokens=24)
                rows.append({"model": "stories260k pruned, device_map=auto", "attention": attention,
                             "dtype": str(dtype).removeprefix("torch."), **result})
                print(rows[-1], flush=True)
    machine = describe_machine()
    results = {"transformers": transformers.__version__, "machine": machine_summary(machine),
               "machine_details": machine, "dtype": str(dtype).removeprefix("torch."), "rows": rows}
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / f"cuda_generation-{transformers.__version__}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    names = ["cached_equals_uncached", "static_equals_dynamic", "padded_row_equals_alone"]
    lines = [f"# Pruned-format generation on CUDA, transformers {transformers.__version__}", "",
             f"Machine: {results['machine']}. Greedy, 12 new tokens (24 for stories260k), left padding.", "",
             "| model | dtype | attention | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    lines += [f"| {r['model']} | {r['dtype']} | {r['attention']} | "
              + " | ".join("yes" if r[n] else "**no**" for n in names) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    # Pass: the pruned format holds every check in float32, and in bfloat16 wherever the stock model of its family does.
    stock = {(r["model"].split(" (")[0], r["attention"]): r for r in rows if "stock" in r["model"]}
    failures = [r for r in rows if "stock" not in r["model"] for n in names if not r[n]
                and (r["dtype"] == "float32" or stock.get((r["model"].split(" (")[0], r["attention"]), {}).get(n, True))]
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
