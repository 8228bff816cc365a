"""The Hub: model cards, the pruning-profile picture, the pusher, and the demo Space."""

from ..provenance import card_data, profile_figure, profile_png, profile_rows, render_model_card
from .push import PushResult, push_to_hub
from .space import push_space, render_space_card

__all__ = [
    "PushResult",
    "card_data",
    "profile_figure",
    "profile_png",
    "profile_rows",
    "push_space",
    "push_to_hub",
    "render_model_card",
    "render_space_card",
]
