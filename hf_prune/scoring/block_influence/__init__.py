from .config import BlockInfluenceConfig
from .method import BlockInfluence, LayerSimilarity

__all__ = ["BlockInfluence", "BlockInfluenceConfig", "LayerSimilarity"]
