"""Scoring: one folder per method (a documented config dataclass and a method class), paired in `registry.REGISTRY`."""

from .base import MethodConfig, PruningMethod, PruningResult, PruningTarget, Scores
from .block_influence import BlockInfluenceConfig
from .depth_baselines import LastLayersConfig, RandomLayersConfig
from .llm_rank import LLMRankConfig
from .registry import METHODS, REGISTRY, build_method, get_method, get_method_config, method_config_from_dict
from .transact import TransActConfig
from .width import MLPWidthConfig, WidthConfig
from .width_baselines import ActivationConfig, MagnitudeConfig, RandomWidthConfig, WandaSPConfig

__all__ = [
    "METHODS",
    "REGISTRY",
    "ActivationConfig",
    "LLMRankConfig",
    "MLPWidthConfig",
    "MagnitudeConfig",
    "RandomWidthConfig",
    "TransActConfig",
    "WandaSPConfig",
    "WidthConfig",
    "BlockInfluenceConfig",
    "LastLayersConfig",
    "MethodConfig",
    "PruningMethod",
    "PruningResult",
    "PruningTarget",
    "RandomLayersConfig",
    "Scores",
    "build_method",
    "get_method",
    "get_method_config",
    "method_config_from_dict",
]
