from .config import LLMRankConfig
from .method import LinearNorms, LLMRank, pagerank_chain, pagerank_step

__all__ = ["LLMRank", "LLMRankConfig", "LinearNorms", "pagerank_chain", "pagerank_step"]
