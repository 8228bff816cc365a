"""Surgery: physically removing layers, heads, rotary pairs and neurons, described by a `PruningPlan`."""

from .apply import apply_plan
from .plan import PruningPlan
from .primitives import remove_heads, remove_kv_groups, remove_layers, remove_neurons, remove_rotary_pairs
from .trace import LayerTrace, PruningTrace, trace_of

__all__ = [
    "LayerTrace",
    "PruningPlan",
    "PruningTrace",
    "apply_plan",
    "remove_heads",
    "remove_kv_groups",
    "remove_layers",
    "remove_neurons",
    "remove_rotary_pairs",
    "trace_of",
]
