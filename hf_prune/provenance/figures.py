"""A picture of a pruning: per source layer, its score and what it kept (PNG, for the Hub repo and the Space)."""

from __future__ import annotations

import io

from ..checkpoint.record import PruningRecord

PROFILE_NAME = "pruning_profile.png"


def profile_rows(record: PruningRecord | dict) -> list[dict]:
    """One row per source layer: `layer`, `kept`, `score` (None without layer scores), and the fractions of its
    attention and MLP width kept (0 for a removed layer).

    Example:

    ```python
    >>> rows = profile_rows(PruningRecord.load("pruned-smollm2"))  # doctest: +SKIP
    >>> rows[0]["kept"], rows[0]["attention_kept"]  # doctest: +SKIP
    (True, 1.0)

    ```
    """
    data = record.to_dict() if isinstance(record, PruningRecord) else record
    by_source = {layer["source_layer"]: layer for layer in data["per_layer"]}
    scores = (data.get("scores") or {}).get("layer_scores")
    rows = []
    for layer in range(data["layers_before"]):
        kept = by_source.get(layer)
        rows.append(
            {
                "layer": layer,
                "kept": kept is not None,
                "score": scores[layer] if scores else None,
                "attention_kept": kept["attention_width_kept"] if kept else 0.0,
                "mlp_kept": kept["mlp_width_kept"] if kept else 0.0,
            }
        )
    return rows


def profile_figure(record: PruningRecord | dict):
    """A matplotlib figure: layer scores (removed layers in red) above the kept attention and MLP widths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    rows = profile_rows(record)
    data = record.to_dict() if isinstance(record, PruningRecord) else record
    layers = [row["layer"] for row in rows]
    has_scores = rows[0]["score"] is not None
    figure, axes = plt.subplots(2 if has_scores else 1, 1, figsize=(8, 4.2 if has_scores else 2.4), sharex=True, squeeze=False)
    axes = axes[:, 0]
    if has_scores:
        colours = ["#4C72B0" if row["kept"] else "#C44E52" for row in rows]
        axes[0].bar(layers, [row["score"] for row in rows], color=colours)
        axes[0].set_ylabel("layer score")
        axes[0].set_title(f"{data['method']}: {data['layers_after']} of {data['layers_before']} layers kept (red: removed)")
    width_axis = axes[-1]
    offset = 0.2
    width_axis.bar([x - offset for x in layers], [row["attention_kept"] for row in rows], width=0.4, label="attention", color="#55A868")
    width_axis.bar([x + offset for x in layers], [row["mlp_kept"] for row in rows], width=0.4, label="MLP", color="#8172B2")
    width_axis.set_ylim(0, 1.05)
    width_axis.set_ylabel("width kept")
    width_axis.set_xlabel("source layer")
    width_axis.legend(loc="lower right", fontsize=8)
    if not has_scores:
        width_axis.set_title(f"{data['method']}: width kept per layer")
    figure.tight_layout()
    return figure


def profile_png(record: PruningRecord | dict) -> bytes:
    """`profile_figure` as PNG bytes.

    Example:

    ```python
    >>> from hf_prune.hub import profile_png
    >>> profile_png(PruningRecord.load("pruned-smollm2"))[:4]  # doctest: +SKIP
    b'\\x89PNG'

    ```
    """
    from matplotlib import pyplot as plt

    figure = profile_figure(record)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
