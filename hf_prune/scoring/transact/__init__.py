from .config import TransActConfig
from .method import TransAct, head_salience, narrow_heads

__all__ = ["TransAct", "TransActConfig", "head_salience", "narrow_heads"]
