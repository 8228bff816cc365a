"""The one place that maps method names to their configurations. Adding a method: its folder, and one line here."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidPruningError
from .base import MethodConfig
from .block_influence import BlockInfluenceConfig
from .depth_baselines import LastLayersConfig, RandomLayersConfig
from .llm_rank import LLMRankConfig
from .transact import TransActConfig
from .width_baselines import ActivationConfig, MagnitudeConfig, RandomWidthConfig, WandaSPConfig

METHODS: dict[str, type[MethodConfig]] = {
    config.method: config
    for config in (
        BlockInfluenceConfig,
        LastLayersConfig,
        RandomLayersConfig,
        TransActConfig,
        LLMRankConfig,
        MagnitudeConfig,
        ActivationConfig,
        WandaSPConfig,
        RandomWidthConfig,
    )
}


def get_method_config(method: str, **options: Any) -> MethodConfig:
    """The configuration of `method`, with `options` set (unknown method or option: one-line error).

    Example:

    ```python
    >>> from hf_prune.scoring import get_method_config
    >>> get_method_config("block-influence", metric="angular")
    BlockInfluenceConfig(metric='angular', iterative=False, contiguous=False)

    ```
    """
    if method not in METHODS:
        raise InvalidPruningError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    config_class = METHODS[method]
    fields = set(config_class.__dataclass_fields__)
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InvalidPruningError(f"method {method} has no option {', '.join(unknown)}")
    return config_class(**options)
