"""Configurations of the depth baselines: remove the last layers, or random layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import MethodConfig


@dataclass
class LastLayersConfig(MethodConfig):
    """Baseline: remove the last n decoder layers. Needs no calibration.

    Example:

    ```python
    >>> from hf_prune.scoring import LastLayersConfig
    >>> LastLayersConfig().needs_calibration
    False

    ```
    """

    method = "last-layers"
    kind = "depth"
    needs_calibration = False



@dataclass
class RandomLayersConfig(MethodConfig):
    """Baseline: remove n decoder layers drawn uniformly at random with `seed`. Needs no calibration.

    Example:

    ```python
    >>> from hf_prune.scoring import RandomLayersConfig
    >>> RandomLayersConfig(seed=3).seed
    3

    ```
    """

    method = "random-layers"
    kind = "depth"
    needs_calibration = False

    seed: int = field(default=0, metadata={"help": "seed of the random draw"})

