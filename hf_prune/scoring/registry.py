"""The one place that maps method names to their configuration and method classes, and builds methods.

As in PEFT, a configuration is plain data and knows nothing of the code that runs it: the registry pairs the two.
Adding a method: its folder (a config dataclass and a method class), and one line in `REGISTRY`.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidPruningError
from .base import MethodConfig, PruningMethod
from .block_influence import BlockInfluence, BlockInfluenceConfig
from .depth_baselines import LastLayers, LastLayersConfig, RandomLayers, RandomLayersConfig
from .llm_rank import LLMRank, LLMRankConfig
from .transact import TransAct, TransActConfig
from .width_baselines import (
    Activation,
    ActivationConfig,
    Magnitude,
    MagnitudeConfig,
    RandomWidth,
    RandomWidthConfig,
    WandaSP,
    WandaSPConfig,
)

REGISTRY: dict[str, tuple[type[MethodConfig], type[PruningMethod]]] = {
    config.method: (config, method)
    for config, method in (
        (BlockInfluenceConfig, BlockInfluence),
        (LastLayersConfig, LastLayers),
        (RandomLayersConfig, RandomLayers),
        (TransActConfig, TransAct),
        (LLMRankConfig, LLMRank),
        (MagnitudeConfig, Magnitude),
        (ActivationConfig, Activation),
        (WandaSPConfig, WandaSP),
        (RandomWidthConfig, RandomWidth),
    )
}
METHODS: dict[str, type[MethodConfig]] = {name: config for name, (config, _) in REGISTRY.items()}


def _known(method: str) -> None:
    if method not in REGISTRY:
        raise InvalidPruningError(f"unknown method {method!r}; choose one of {', '.join(REGISTRY)}")


def get_method_config(method: str, **options: Any) -> MethodConfig:
    """The configuration of `method`, with `options` set (unknown method or option: one-line error).

    Example:

    ```python
    >>> from hf_prune.scoring import get_method_config
    >>> get_method_config("block-influence", metric="angular")
    BlockInfluenceConfig(metric='angular', iterative=False, contiguous=False)

    ```
    """
    _known(method)
    return METHODS[method].from_dict(options)


def build_method(config: MethodConfig) -> PruningMethod:
    """The method object that runs `config`.

    Example:

    ```python
    >>> from hf_prune.scoring import TransActConfig, build_method
    >>> method = build_method(TransActConfig(shots=4))
    >>> type(method).__name__, method.config.shots
    ('TransAct', 4)

    ```
    """
    _known(config.method)
    config_class, method_class = REGISTRY[config.method]
    if not isinstance(config, config_class):
        raise InvalidPruningError(f"{type(config).__name__} is not the configuration of {config.method}")
    return method_class(config)


def get_method(method: str, **options: Any) -> PruningMethod:
    """The method `method` with `options` set: `build_method(get_method_config(method, **options))`.

    Example:

    ```python
    >>> from hf_prune.scoring import get_method
    >>> get_method("llm-rank").config.gamma
    0.0

    ```
    """
    return build_method(get_method_config(method, **options))


def method_config_from_dict(data: dict[str, Any]) -> MethodConfig:
    """The configuration whose `to_dict()` is `data` (the `settings` of a `pruning.json`): the inverse of `to_dict`.

    Example:

    ```python
    >>> from hf_prune.scoring import LLMRankConfig, method_config_from_dict
    >>> config = LLMRankConfig(gamma=0.5)
    >>> method_config_from_dict(config.to_dict()) == config
    True

    ```
    """
    if "method" not in data:
        raise InvalidPruningError("method settings without a 'method' name cannot be rebuilt")
    _known(data["method"])
    return METHODS[data["method"]].from_dict(data)
