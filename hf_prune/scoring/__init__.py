"""Scoring: one folder per method, each with a documented config dataclass, all listed in `registry.METHODS`."""

from .base import MethodConfig, PruningMethod, PruningResult, PruningTarget, Scores
from .block_influence import BlockInfluenceConfig
from .depth_baselines import LastLayersConfig, RandomLayersConfig
from .registry import METHODS, get_method_config

__all__ = [
    "METHODS",
    "BlockInfluenceConfig",
    "LastLayersConfig",
    "MethodConfig",
    "PruningMethod",
    "PruningResult",
    "PruningTarget",
    "RandomLayersConfig",
    "Scores",
    "get_method_config",
]
