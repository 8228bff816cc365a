"""Provenance: what was done to a model, with what, and how well, and the ways it is shown to people.

`pruning.json` (`PruningRecord`) is the single source; the size figures fill it, and the run report, the model card
and the figures (pruning profile, healing curve) are rendered from it. Saving, pushing and the Space consume it.
"""

from .card import card_data, looks_like_hub_id, render_model_card
from .figures import CURVE_NAME, PROFILE_NAME, healing_curve_png, profile_figure, profile_png, profile_rows
from .record import RECORD_NAME, PruningRecord
from .report import evaluation_rows, healing_report, human_bytes, human_count, percent_change, render_report
from .size import count_parameters, kv_cache_bytes_per_token

__all__ = [
    "CURVE_NAME",
    "PROFILE_NAME",
    "RECORD_NAME",
    "PruningRecord",
    "card_data",
    "count_parameters",
    "evaluation_rows",
    "healing_curve_png",
    "healing_report",
    "human_bytes",
    "human_count",
    "kv_cache_bytes_per_token",
    "looks_like_hub_id",
    "percent_change",
    "profile_figure",
    "profile_png",
    "profile_rows",
    "render_model_card",
    "render_report",
]
