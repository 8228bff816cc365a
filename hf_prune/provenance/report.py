"""Formatting measurements for people: the run report (`report.md`) and the tables the model card shares."""

from __future__ import annotations

from typing import Any


def human_count(value: int) -> str:
    """`134515008` -> `"134.5M"`."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)


def human_bytes(value: int) -> str:
    """`46080` -> `"45.0 KiB"`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def percent_change(before: float, after: float) -> str:
    """`(20, 25)` -> `"+25.0%"`."""
    return f"{(after - before) / before * 100:+.1f}%" if before else "n/a"


def evaluation_rows(evaluation: dict) -> list[dict[str, Any]]:
    """Per text: windows, dense and pruned perplexity, and the change, formatted."""
    rows = []
    for entry in evaluation.get("perplexity", []):
        rows.append(
            {
                "text": entry["text"],
                "windows": entry["windows"],
                "seq_len": entry["seq_len"],
                "dense": f"{entry['dense']:.3f}",
                "pruned": f"{entry['pruned']:.3f}",
                "change": percent_change(entry["dense"], entry["pruned"]),
            }
        )
    return rows


def speed_rows(evaluation: dict) -> tuple[list[dict[str, str]], str]:
    """Dense and pruned speed and memory, formatted, and a sentence saying how they were measured."""
    speed = evaluation.get("speed")
    if not speed:
        return [], ""
    dense, pruned = speed["dense"], speed["pruned"]
    rows = [
        {"name": "prefill tokens/s", "dense": f"{dense['prefill_tokens_per_s']:.1f}", "pruned": f"{pruned['prefill_tokens_per_s']:.1f}"},
        {"name": "decode tokens/s", "dense": f"{dense['decode_tokens_per_s']:.1f}", "pruned": f"{pruned['decode_tokens_per_s']:.1f}"},
        {"name": "peak memory", "dense": human_bytes(dense["peak_memory_bytes"]), "pruned": human_bytes(pruned["peak_memory_bytes"])},
        {"name": "KV cache per token", "dense": human_bytes(dense["kv_cache_bytes_per_token"]), "pruned": human_bytes(pruned["kv_cache_bytes_per_token"])},
        {"name": "parameters", "dense": human_count(dense["parameters"]), "pruned": human_count(pruned["parameters"])},
    ]
    settings = (
        f"{dense['prompt_tokens']}-token prompt, {dense['new_tokens']} new tokens, median of {dense['repeats']} runs "
        f"on {dense['device']} ({dense['dtype']}, {dense['threads']} threads)"
    )
    return rows, settings


def task_rows(evaluation: dict) -> tuple[list[str], list[dict[str, Any]], str]:
    """Task accuracy, formatted: the model columns (`dense`, `pruned`, maybe `healed`), one row per task with each
    model's headline metric and standard error and the last model's retention, and a line on how it was measured."""
    tasks = evaluation.get("tasks")
    if not tasks:
        return [], [], ""
    first = next(iter(tasks["tasks"].values()))
    models = [name for name in ("dense", "pruned", "healed") if name in first]
    last = models[-1]
    rows = []
    for task, entry in tasks["tasks"].items():
        metric = entry["metric"]
        row = {"task": task, "metric": metric, "n": entry[models[0]]["items"]}
        for name in models:
            value, stderr = entry[name][metric], entry[name].get(f"{metric}_stderr")
            row[name] = f"{value:.3f}" + (f" ± {stderr:.3f}" if isinstance(stderr, float) else "")
        retention = entry["retention"].get(last)
        row["retention"] = f"{retention:.1%}" if retention is not None else ""
        rows.append(row)
    average = tasks["average_retention"].get(last)
    rows.append({"task": "mean retention", "metric": "", "n": "", **{name: "" for name in models},
                 "retention": f"{average:.1%}" if average is not None else ""})
    settings = tasks["settings"]
    note = (f"lm-evaluation-harness {settings['lm_eval_version']}, {settings['num_fewshot']}-shot"
            + (f", the first {settings['limit']} items of each task" if settings.get("limit") else ", every item")
            + ("; data from local files (SHA-256 in pruning.json)" if settings.get("task_data") else ""))
    return models, rows, note


def render_report(record: dict, timings: dict[str, float]) -> str:
    """`report.md`: what one `hf-prune prune` run did, how long each step took, and what it measured.

    Example:

    ```python
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.provenance import PruningRecord
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> record = PruningRecord.from_model(hf_prune.remove_layers(model, [1]), source_model="me/tiny-llama")
    >>> from hf_prune.provenance import render_report
    >>> lines = render_report(record.to_dict(), {"scoring": 12.5}).splitlines()
    >>> lines[0], "| scoring | 12.5 |" in lines
    ('# hf-prune run report', True)

    ```
    """
    evaluation = record.get("evaluation") or {}
    lines = [
        "# hf-prune run report",
        "",
        f"- command: `{record.get('command') or 'Python API'}`",
        f"- source model: {record['source_model']}",
        f"- method: {record['method']} ({record['format']} checkpoint)",
        f"- machine: {evaluation.get('machine', 'not recorded')}",
        f"- written: {record['created']} by hf-prune {record['hf_prune_version']}",
        "",
        "## Time per step",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {step} | {seconds:.1f} |" for step, seconds in timings.items()),
        "",
        "## Dense versus pruned",
        "",
        "| | dense | pruned | change |",
        "|---|---:|---:|---:|",
        f"| parameters | {human_count(record['params_before'])} | {human_count(record['params_after'])} | "
        f"{percent_change(record['params_before'], record['params_after'])} |",
        f"| decoder layers | {record['layers_before']} | {record['layers_after']} | |",
        f"| KV cache per token | {human_bytes(record['kv_cache_bytes_per_token_before'])} | "
        f"{human_bytes(record['kv_cache_bytes_per_token_after'])} | "
        f"{percent_change(record['kv_cache_bytes_per_token_before'], record['kv_cache_bytes_per_token_after'])} |",
    ]
    for row in evaluation_rows(evaluation):
        lines.append(
            f"| perplexity, {row['text']} ({row['windows']}x{row['seq_len']}) | {row['dense']} | {row['pruned']} | {row['change']} |"
        )
    table, settings = speed_rows(evaluation)
    for row in table:
        if row["name"] in ("parameters", "KV cache per token"):
            continue  # already in the table's first rows, from the record
        lines.append(f"| {row['name']} | {row['dense']} | {row['pruned']} | |")
    if settings:
        lines += ["", f"Speed: {settings}."]
    models, rows, note = task_rows(evaluation)
    if rows:
        lines += ["", "## Task accuracy", "", f"{note}. Retention: {models[-1]} / dense on the task's metric.", "",
                  "| task | metric | items | " + " | ".join(models) + " | retention |",
                  "|---|---|---:|" + "---:|" * len(models) + "---:|"]
        lines += [f"| {row['task']} | {row['metric']} | {row['n']} | " + " | ".join(row[name] for name in models)
                  + f" | {row['retention']} |" for row in rows]
    if not evaluation:
        lines += ["", "Not evaluated (run with `--evaluate` to measure perplexity, `--speed` for speed)."]
    scores = (record.get("scores") or {}).get("layer_scores")
    if scores:
        removed = set(record["removed_layers"])
        lines += ["", "## Layer scores (higher = more important)", "", "| layer | score | |", "|---:|---:|---|"]
        lines += [f"| {i} | {score:.5f} | {'removed' if i in removed else ''} |" for i, score in enumerate(scores)]
    return "\n".join(lines) + "\n"


def healing_report(healing: dict) -> str:
    """The healing section appended to a checkpoint's `report.md`."""
    lines = [
        "## Healing", "",
        f"Distilled from {healing['teacher']} on {healing['tokens']:,} tokens of `{healing['data']['source']}` in "
        f"{healing['steps']} steps on {healing['processes']} process(es): {healing['wall_seconds']:.0f} s, "
        f"{healing['tokens_per_second']:,.0f} training tokens/s.", "",
        "| training tokens | held-out perplexity |", "|---:|---:|",
    ]
    lines += [f"| {point['tokens']:,} | {point['perplexity']:.3f} |" for point in healing["held_out"]]
    return "\n".join(lines) + "\n"
