"""Turning scores into plans: the selection rules several methods share."""

from __future__ import annotations

from collections.abc import Sequence

from ..surgery import PruningPlan


def lowest(scores: Sequence[float], count: int) -> list[int]:
    """Indices of the `count` lowest scores, lowest first (ties go to the lower index)."""
    return sorted(range(len(scores)), key=lambda index: (scores[index], index))[:count]


def remove_lowest_layers(layer_scores: Sequence[float], count: int) -> PruningPlan:
    """The plan removing the `count` layers with the lowest scores.

    Example:

    ```python
    >>> remove_lowest_layers([0.5, 0.1, 0.3, 0.2], 2).removed_layers
    [1, 3]

    ```
    """
    return PruningPlan(removed_layers=lowest(layer_scores, count))
