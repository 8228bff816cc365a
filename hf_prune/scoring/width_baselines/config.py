"""Configurations of the width baselines, on the same structures as TransAct (query heads / KV groups, neurons)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..width import WidthConfig


@dataclass
class MagnitudeConfig(WidthConfig):
    """Baseline: keep the heads and neurons with the largest weights (L2 norm of every weight removed with them:
    a head's q_proj rows and o_proj columns; a neuron's gate and up rows and down column). Needs no calibration.

    Example:

    ```python
    >>> from hf_prune.scoring import MagnitudeConfig
    >>> MagnitudeConfig(mlp_ratio=0.2).needs_calibration
    False

    ```
    """

    method = "magnitude"
    needs_calibration = False



@dataclass
class ActivationConfig(WidthConfig):
    """Baseline: keep the heads and neurons with the largest activations (a head: the mean L2 norm of its channels
    entering o_proj; a neuron: the L2 norm of its value entering down_proj), over the calibration tokens.

    Example:

    ```python
    >>> from hf_prune.scoring import ActivationConfig
    >>> ActivationConfig().method
    'activation'

    ```
    """

    method = "activation"



@dataclass
class WandaSPConfig(WidthConfig):
    """Baseline: Wanda, structured (`wanda-sp`): a structure scores `sum |W_ij| * ||X_j||` over the weights that read
    it, that is o_proj's columns of a head and down_proj's column of a neuron, with `||X_j||` the L2 norm of the
    channel over the calibration tokens.

    Example:

    ```python
    >>> from hf_prune.scoring import WandaSPConfig
    >>> WandaSPConfig().method
    'wanda-sp'

    ```
    """

    method = "wanda-sp"
    paper = "An et al., 2024. Fluctuation-based Adaptive Structured Pruning for Large Language Models. AAAI 2024"



@dataclass
class RandomWidthConfig(WidthConfig):
    """Baseline: keep heads and neurons drawn at random with `seed`. Needs no calibration.

    Example:

    ```python
    >>> from hf_prune.scoring import RandomWidthConfig
    >>> RandomWidthConfig(seed=1).seed
    1

    ```
    """

    method = "random"
    needs_calibration = False

    seed: int = field(default=0, metadata={"help": "seed of the random draw"})

