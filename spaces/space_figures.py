"""The demo Space's view of provenance: the pruning profile (drawn by `hf_prune.provenance`), the facts of
`pruning.json`, and the per-layer table, for the page and the `/profile` API.
"""

from __future__ import annotations

from typing import Any

from space_generation import ModelInfo, Models

from hf_prune.provenance import evaluation_rows, human_bytes, human_count, percent_change, profile_rows
from hf_prune.provenance import profile_figure as provenance_profile_figure

# ---------------------------------------------------------------------------------------------------------- profile


def _source_layer_config(models: Models, layer: int):
    if models.base is None:
        return None
    layers = models.base.model.config.per_layer_config
    return layers[layer] if layer < len(layers) else None


def _with_source_widths(models: Models) -> dict[str, Any] | None:
    """The record, its kept layers completed with their source layer's head counts and MLP width where it lacks
    them (records written before hf-prune kept them) and the source model is loaded."""
    record = models.record
    if not record:
        return None
    per_layer = []
    for layer in record["per_layer"]:
        source = _source_layer_config(models, layer["source_layer"])
        if "source_num_attention_heads" not in layer and source is not None:
            layer = {**layer, "source_num_attention_heads": source.num_attention_heads,
                     "source_num_key_value_heads": source.num_key_value_heads,
                     "source_intermediate_size": source.intermediate_size}
        per_layer.append(layer)
    return {**record, "per_layer": per_layer}


def layer_rows(models: Models) -> list[dict[str, Any]]:
    """One row per source layer: kept or removed, its score, and the widths kept (with the source's where known)."""
    record = _with_source_widths(models)
    if not record:
        return []
    by_source = {layer["source_layer"]: layer for layer in record["per_layer"]}
    rows = []
    for row in profile_rows(record):
        kept = by_source.get(row["layer"]) or {}
        rows.append({
            "source_layer": row["layer"],
            "kept": row["kept"],
            "layer": kept.get("layer"),
            "score": row["score"],
            "heads": kept.get("num_attention_heads", 0),
            "kv_heads": kept.get("num_key_value_heads", 0),
            "head_dim": kept.get("head_dim"),
            "intermediate_size": kept.get("intermediate_size", 0),
            "attention_kept": row["attention_kept"],
            "mlp_kept": row["mlp_kept"],
            "heads_kept": row["heads_kept"],
            "kv_heads_kept": row["kv_heads_kept"],
            "source_heads": kept.get("source_num_attention_heads"),
            "source_kv_heads": kept.get("source_num_key_value_heads"),
            "source_intermediate_size": kept.get("source_intermediate_size"),
        })
    return rows


def profile_figure(models: Models):
    """The pruning profile `hf_prune.provenance.profile_figure` draws (the checkpoint's own picture), or a line
    saying why there is none."""
    record = _with_source_widths(models)
    if record:
        return provenance_profile_figure(record)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 1.4))
    axis = figure.add_subplot()
    axis.axis("off")
    reason = "the model did not load" if models.pruned is None else "this checkpoint has no pruning.json"
    axis.text(0.5, 0.5, f"No pruning profile: {reason}.", ha="center", va="center", fontsize=11)
    return figure


def record_facts(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The key facts of pruning.json, as the profile API returns them."""
    if not record:
        return None
    keys = [
        "method", "source_model", "format", "params_before", "params_after", "layers_before", "layers_after",
        "removed_layers", "kv_cache_bytes_per_token_before", "kv_cache_bytes_per_token_after", "dtype",
        "width_kept", "calibration", "hf_prune_version",
    ]
    facts = {key: record.get(key) for key in keys}
    facts["perplexity"] = (record.get("evaluation") or {}).get("perplexity") or []
    facts["has_layer_scores"] = bool((record.get("scores") or {}).get("layer_scores"))
    return facts


def facts_markdown(models: Models) -> str:
    record = models.record
    if not record:
        if models.pruned is None:
            return "No facts: the pruned model did not load."
        return f"`{models.model_name}` has no `pruning.json`, so it was not written by hf-prune; only generation runs."
    removed = ", ".join(str(layer) for layer in record.get("removed_layers") or []) or "none"
    width = record.get("width_kept") or {}
    calibration = record.get("calibration")
    if calibration:
        sha = str(calibration.get("tokens_sha256") or "")
        calibration_line = (
            f"`{calibration.get('source')}`, {calibration.get('num_samples')} samples x {calibration.get('seq_len')} "
            f"tokens, tokens sha256 `{sha[:16]}{'...' if len(sha) > 16 else ''}`"
        )
    else:
        calibration_line = "none (manual pruning)"
    lines = [
        f"- **Method** `{record['method']}`, **format** `{record['format']}`, **dtype** `{record.get('dtype')}`",
        f"- **Source model** `{record['source_model']}`",
        f"- **Removed layers** (source numbering): {removed}",
        f"- **Width kept** in the remaining layers: attention {width.get('attention', 1.0):.0%}, "
        f"MLP {width.get('mlp', 1.0):.0%}",
        f"- **Calibration** {calibration_line}",
        "",
        "| | source | pruned | change |",
        "|---|---:|---:|---:|",
        f"| parameters | {human_count(record['params_before'])} | {human_count(record['params_after'])} | "
        f"{percent_change(record['params_before'], record['params_after'])} |",
        f"| layers | {record['layers_before']} | {record['layers_after']} | "
        f"{percent_change(record['layers_before'], record['layers_after'])} |",
        f"| KV cache per token | {human_bytes(record['kv_cache_bytes_per_token_before'])} | "
        f"{human_bytes(record['kv_cache_bytes_per_token_after'])} | "
        f"{percent_change(record['kv_cache_bytes_per_token_before'], record['kv_cache_bytes_per_token_after'])} |",
    ]
    rows = evaluation_rows(record.get("evaluation") or {})
    if rows:
        lines += [
            "",
            "**Perplexity** (lower is better)",
            "",
            "| text | windows | source | pruned | change |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {row['text']} | {row['windows']} x {row['seq_len']} | {row['dense']} | {row['pruned']} | "
                f"{row['change']} |"
                for row in rows
            ),
        ]
    if record.get("hf_prune_version"):
        lines += ["", f"Written by hf-prune {record['hf_prune_version']}."]
    return "\n".join(lines)


def layer_table(models: Models) -> list[list[Any]]:
    def fraction(kept, source):
        return f"{kept}" if source is None else f"{kept} / {source}"

    table = []
    for row in layer_rows(models):
        table.append(
            [
                row["source_layer"],
                f"kept as {row['layer']}" if row["kept"] else "removed",
                "" if row["score"] is None else f"{row['score']:.5f}",
                fraction(row["heads"], row["source_heads"]),
                fraction(row["kv_heads"], row["source_kv_heads"]),
                "" if row["head_dim"] is None else row["head_dim"],
                fraction(row["intermediate_size"], row["source_intermediate_size"]),
                f"{row['mlp_kept']:.0%}",
            ]
        )
    return table


def profile_facts(models: Models) -> dict[str, Any]:
    def figures(info: ModelInfo | None):
        if info is None:
            return None
        return {
            "name": info.name,
            "parameters": info.parameters,
            "kv_cache_bytes_per_token": info.kv_bytes_per_token,
            "weights_bytes": info.weights_bytes,
            "layers": info.model.config.num_hidden_layers,
        }

    return {
        "model": models.model_name,
        "base_model": models.base_name,
        "errors": list(models.errors),
        "notes": list(models.notes),
        "record": record_facts(models.record),
        "models": {"pruned": figures(models.pruned), "base": figures(models.base)},
        "layers": layer_rows(models),
    }
