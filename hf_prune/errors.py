"""Exceptions raised by hf-prune. Each message is one line that names the problem.

All of them derive from `HfPruneError`; most also derive from the built-in they refine (`ValueError`,
`ImportError`), so existing `except ValueError` code keeps working. Two more live with the architecture files, because
those files travel inside checkpoints and cannot import hf_prune: `PrunedConfigError` (a pruned config contradicts
itself, e.g. heads not divisible into key/value groups) and `PrunedCheckpointError` (tensors disagree with the config).
"""

from .architecture.configuration_pruned import PrunedConfigError
from .architecture.modeling_pruned import PrunedCheckpointError


class HfPruneError(Exception):
    """Base class of hf-prune's own errors.

    Example:

    ```python
    >>> import hf_prune
    >>> try:
    ...     hf_prune.load_model("no/such-model-anywhere", local_files_only=True)
    ... except hf_prune.HfPruneError as error:
    ...     print(type(error).__name__)
    ModelNotFoundError

    ```
    """


class UnsupportedArchitectureError(HfPruneError, ValueError):
    """The model's architecture is not one hf-prune can prune; the message lists the supported ones."""


class InvalidPruningError(HfPruneError, ValueError):
    """A pruning request cannot be carried out: ratio out of range, every layer removed, uneven KV groups, ..."""


class FormatError(HfPruneError, ValueError):
    """The requested checkpoint format cannot express the model (e.g. `stock` for a layer without attention)."""


class CalibrationError(HfPruneError, ValueError):
    """Calibration or evaluation text is unusable: empty, too short for the windows asked for, unreadable."""


class CheckpointError(HfPruneError, ValueError):
    """A checkpoint on disk is unusable: tensor shapes disagree with its config, or files are missing."""


class ModelNotFoundError(HfPruneError, OSError):
    """The model name is neither a local directory, a known alias, nor a reachable Hub repository."""


class MissingDependencyError(HfPruneError, ImportError):
    """An optional package is needed; the message says what to install."""


class OutputExistsError(HfPruneError, FileExistsError):
    """The output directory exists and is not empty, and overwriting was not asked for."""


class NotACheckpointError(HfPruneError, ValueError):
    """A directory given to push is not a checkpoint written by hf-prune (no pruning.json, no safetensors...)."""


class HubError(HfPruneError):
    """Base class of errors talking to the Hugging Face Hub. Messages never contain the token."""


class MissingTokenError(HubError):
    """No token was found (HF_TOKEN, the cached login, or --token) for an operation that writes."""


class InvalidTokenError(HubError, PermissionError):
    """The Hub rejected the token (401): invalid or expired."""


class HubPermissionError(HubError, PermissionError):
    """The token is valid but may not write to that namespace or repository (403)."""


class InvalidRepoIdError(HubError, ValueError):
    """A repository id is not `NAMESPACE/NAME` with the characters the Hub allows."""


class HubUnreachableError(HubError, ConnectionError):
    """The Hub could not be reached, or kept failing with server errors, after the retries."""


__all__ = [
    "CalibrationError",
    "CheckpointError",
    "FormatError",
    "HealingError",
    "HfPruneError",
    "HubError",
    "HubPermissionError",
    "HubUnreachableError",
    "InvalidRepoIdError",
    "InvalidTokenError",
    "LlamaCppError",
    "MissingTokenError",
    "NotACheckpointError",
    "InvalidPruningError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "OutputExistsError",
    "PrunedCheckpointError",
    "PrunedConfigError",
    "TaskDataError",
    "UnsupportedArchitectureError",
]


class HealingError(HfPruneError, ValueError):
    """Healing cannot start or cannot go on: a teacher with another vocabulary, data too short for one batch, a loss
    that became NaN or infinite, nothing to resume."""


class TaskDataError(HfPruneError, ValueError):
    """Task accuracy cannot be measured as asked: an unknown task, a task-data file that is missing, a bad limit."""


class LlamaCppError(HfPruneError, RuntimeError):
    """llama.cpp failed while running a GGUF file that hf-prune wrote (it runs in a child process, so a crash inside
    llama.cpp is reported here instead of ending the caller)."""
