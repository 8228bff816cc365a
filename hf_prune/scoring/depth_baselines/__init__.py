from .config import LastLayersConfig, RandomLayersConfig
from .method import LastLayers, RandomLayers

__all__ = ["LastLayers", "LastLayersConfig", "RandomLayers", "RandomLayersConfig"]
