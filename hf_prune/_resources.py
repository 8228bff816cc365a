"""Locating the top-level resource folders (`model_cards/`, `spaces/`) from a checkout or an installed wheel."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def resource_dir(folder: str) -> Path:
    """The folder in a source checkout (also what an editable install uses), else its copy packaged in the wheel."""
    checkout = Path(__file__).resolve().parents[1] / folder
    if checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files(f"hf_prune.{folder}")))
