"""Scoring: one folder per method, each with a documented config dataclass, all listed in `registry.METHODS`."""

from .base import MethodConfig, PruningMethod, PruningResult, PruningTarget, Scores
from .block_influence import BlockInfluenceConfig
from .depth_baselines import LastLayersConfig, RandomLayersConfig
from .llm_rank import LLMRankConfig
from .registry import METHODS, get_method_config
from .transact import TransActConfig
from .width import MLPWidthConfig, WidthConfig
from .width_baselines import ActivationConfig, MagnitudeConfig, RandomWidthConfig, WandaSPConfig

__all__ = [
    "METHODS",
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
    "get_method_config",
]
