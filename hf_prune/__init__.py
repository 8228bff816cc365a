"""hf-prune: structured pruning of Hugging Face causal language models, without training.

Importing hf_prune registers the pruned architecture with `AutoConfig`, `AutoModel` and `AutoModelForCausalLM`.

Example:

```python
>>> import tempfile
>>> import hf_prune
>>> loaded = hf_prune.load_model("smollm2-135m")
>>> pruned = hf_prune.remove_layers(loaded.model, [20, 21, 22])
>>> record = hf_prune.save_pruned(pruned, tempfile.mkdtemp() + "/smollm2-27l", tokenizer=loaded.tokenizer)
>>> record.format, record.layers_after, record.params_after < record.params_before
('stock', 27, True)

```
"""

from ._version import __version__ as __version__
from .architecture import (
    PrunedCheckpointError,
    PrunedConfig,
    PrunedConfigError,
    PrunedForCausalLM,
    PrunedModel,
    register_auto_classes,
)
from .architecture.families import to_pruned, to_stock
from .checkpoint import LoadedModel, PruningRecord, load_model, save_pruned
from .errors import (
    CheckpointError,
    FormatError,
    HealingError,
    HfPruneError,
    HubError,
    InvalidPruningError,
    MissingDependencyError,
    ModelNotFoundError,
    OutputExistsError,
    TaskDataError,
    UnsupportedArchitectureError,
)
from .healing import HealingConfig, heal
from .hub import push_to_hub
from .quantization import quantize_weights
from .surgery import (
    PruningPlan,
    PruningTrace,
    apply_plan,
    remove_heads,
    remove_kv_groups,
    remove_layers,
    remove_neurons,
    remove_rotary_pairs,
)

register_auto_classes()

__all__ = [
    "CheckpointError",
    "FormatError",
    "HealingConfig",
    "HealingError",
    "HfPruneError",
    "HubError",
    "InvalidPruningError",
    "LoadedModel",
    "MissingDependencyError",
    "ModelNotFoundError",
    "OutputExistsError",
    "PrunedCheckpointError",
    "TaskDataError",
    "PrunedConfig",
    "PrunedConfigError",
    "PrunedForCausalLM",
    "PrunedModel",
    "PruningPlan",
    "PruningRecord",
    "PruningTrace",
    "UnsupportedArchitectureError",
    "apply_plan",
    "heal",
    "load_model",
    "push_to_hub",
    "quantize_weights",
    "remove_heads",
    "remove_kv_groups",
    "remove_layers",
    "remove_neurons",
    "remove_rotary_pairs",
    "save_pruned",
    "to_pruned",
    "to_stock",
]
