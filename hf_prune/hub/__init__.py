"""The Hub: model cards now; the pusher and the Space build on them."""

from .card import card_data, human_bytes, human_count, render_model_card

__all__ = ["card_data", "human_bytes", "human_count", "render_model_card"]
