"""Pictures of provenance (PNG, for the checkpoint, the Hub repo and the Space): the pruning profile (per source layer,
its score and what it kept) and the healing curve (held-out perplexity against training tokens)."""

from __future__ import annotations

import io

from .record import PruningRecord

PROFILE_NAME = "pruning_profile.png"
CURVE_NAME = "healing_curve.png"


def _figure(**options):
    """A matplotlib `Figure` that belongs to no pyplot window (thread-safe, no display needed: the Space draws from
    several threads)."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **options)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def profile_rows(record: PruningRecord | dict) -> list[dict]:
    """One row per source layer: `layer`, `kept`, `score` (None without layer scores), the fractions of its
    attention and MLP width kept (0 for a removed layer), and of its query heads (`heads_kept`) and KV heads
    (`kv_heads_kept`, None where the record does not give the source's head counts).

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> import hf_prune
    >>> from hf_prune.provenance import PruningRecord, profile_rows
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4, num_key_value_heads=2))
    >>> pruned = hf_prune.remove_kv_groups(hf_prune.remove_layers(model, [1]), {1: [0]})
    >>> rows = profile_rows(PruningRecord.from_model(pruned))
    >>> [(row["kept"], row["heads_kept"], row["kv_heads_kept"]) for row in rows]
    [(True, 1.0, 1.0), (False, 0.0, 0.0), (True, 0.5, 0.5)]

    ```
    """
    data = record.to_dict() if isinstance(record, PruningRecord) else record
    by_source = {layer["source_layer"]: layer for layer in data["per_layer"]}
    scores = (data.get("scores") or {}).get("layer_scores")
    rows = []
    for layer in range(data["layers_before"]):
        kept = by_source.get(layer) or {}
        source_heads, source_kv_heads = kept.get("source_num_attention_heads"), kept.get("source_num_key_value_heads")
        rows.append(
            {
                "layer": layer,
                "kept": bool(kept),
                "score": scores[layer] if scores else None,
                "attention_kept": kept.get("attention_width_kept", 0.0),
                "mlp_kept": kept.get("mlp_width_kept", 0.0),
                "heads_kept": kept["num_attention_heads"] / source_heads if source_heads else kept.get("attention_width_kept", 0.0),
                "kv_heads_kept": kept["num_key_value_heads"] / source_kv_heads if source_kv_heads else (None if kept else 0.0),
            }
        )
    return rows


def profile_figure(record: PruningRecord | dict):
    """A matplotlib `Figure`: per source layer, its score (blue kept, red removed) above the query heads, KV heads and
    MLP width it kept (removed layers shaded). The checkpoint's `pruning_profile.png`, the Hub's, and the Space's chart.

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> import hf_prune
    >>> from hf_prune.provenance import PruningRecord, profile_figure
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4, num_key_value_heads=2))
    >>> record = PruningRecord.from_model(hf_prune.remove_layers(model, [1]), scores={"layer_scores": [0.3, 0.1, 0.2]})
    >>> [axis.get_title() for axis in profile_figure(record).axes][0]
    'manual: 2 of 3 layers kept (blue kept, red removed)'

    ```
    """
    data = record.to_dict() if isinstance(record, PruningRecord) else record
    rows = profile_rows(data)
    has_scores = rows[0]["score"] is not None
    layers = [row["layer"] for row in rows]
    figure = _figure(figsize=(9, 5.2 if has_scores else 3.0))
    axes = figure.subplots(2 if has_scores else 1, 1, sharex=True, squeeze=False)[:, 0]
    if has_scores:
        axes[0].bar(layers, [row["score"] for row in rows], color=["#4C72B0" if row["kept"] else "#C44E52" for row in rows])
        axes[0].set_ylabel("layer score")
        axes[0].set_title(f"{data['method']}: {data['layers_after']} of {data['layers_before']} layers kept "
                          "(blue kept, red removed)", fontsize=10)
    axis = axes[-1]
    know_kv = any(row["kept"] and row["kv_heads_kept"] is not None for row in rows)
    series = [
        ("query heads" if know_kv else "attention width", "heads_kept", "#55A868"),
        *([("KV heads", "kv_heads_kept", "#DD8452")] if know_kv else []),
        ("MLP width", "mlp_kept", "#8172B2"),
    ]
    width = 0.8 / len(series)
    for index, (label, key, colour) in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        axis.bar([x + offset for x in layers], [row[key] or 0.0 for row in rows], width=width, label=label, color=colour)
    for row in rows:
        if not row["kept"]:
            axis.axvspan(row["layer"] - 0.5, row["layer"] + 0.5, color="#C44E52", alpha=0.12, lw=0)
    axis.set_ylim(0, 1.3)
    axis.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    axis.set_ylabel("kept / source")
    axis.set_xlabel("source layer (shaded: removed)")
    axis.set_xlim(min(layers) - 0.6, max(layers) + 0.6)
    axis.legend(loc="upper center", fontsize=8, ncols=len(series), frameon=False)
    if not has_scores:
        axis.set_title(f"{data['method']}: width kept per layer", fontsize=10)
    return figure


def profile_png(record: PruningRecord | dict) -> bytes:
    """`profile_figure` as PNG bytes.

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> import hf_prune
    >>> from hf_prune.provenance import PruningRecord, profile_png
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4, num_key_value_heads=2))
    >>> profile_png(PruningRecord.from_model(hf_prune.remove_layers(model, [1])))[:4]
    b'\\x89PNG'

    ```
    """
    return _png(profile_figure(record))


def healing_curve_png(healing: dict) -> bytes:
    """Held-out perplexity against training tokens (a record's `healing`), as PNG bytes."""
    points = healing["held_out"]
    figure = _figure(figsize=(6, 3.5))
    axis = figure.subplots()
    axis.plot([p["tokens"] for p in points], [p["perplexity"] for p in points], marker="o")
    axis.set_xlabel("training tokens")
    axis.set_ylabel("held-out perplexity")
    axis.set_title(f"Healing by distillation ({healing['config']['loss']})")
    axis.grid(alpha=0.3)
    return _png(figure)
