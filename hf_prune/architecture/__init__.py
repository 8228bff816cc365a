"""The pruned architecture: a Llama-family decoder whose every layer has its own widths.

`configuration_pruned.py` and `modeling_pruned.py` are self-contained; they are copied into each checkpoint saved in
the pruned format. `families.py` (not copied) converts between them and the stock architectures they come from.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_pruned import PrunedConfig, PrunedConfigError
from .modeling_pruned import PrunedCheckpointError, PrunedForCausalLM, PrunedModel, PrunedPreTrainedModel


def register_auto_classes() -> None:
    """Make `AutoConfig`, `AutoModel` and `AutoModelForCausalLM` resolve the pruned format without remote code."""
    AutoConfig.register(PrunedConfig.model_type, PrunedConfig, exist_ok=True)
    AutoModel.register(PrunedConfig, PrunedModel, exist_ok=True)
    AutoModelForCausalLM.register(PrunedConfig, PrunedForCausalLM, exist_ok=True)


__all__ = [
    "PrunedCheckpointError",
    "PrunedConfig",
    "PrunedConfigError",
    "PrunedForCausalLM",
    "PrunedModel",
    "PrunedPreTrainedModel",
    "register_auto_classes",
]
