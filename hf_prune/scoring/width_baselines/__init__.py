from .config import ActivationConfig, MagnitudeConfig, RandomWidthConfig, WandaSPConfig
from .method import Activation, Magnitude, RandomWidth, WandaSP

__all__ = [
    "Activation",
    "ActivationConfig",
    "Magnitude",
    "MagnitudeConfig",
    "RandomWidth",
    "RandomWidthConfig",
    "WandaSP",
    "WandaSPConfig",
]
