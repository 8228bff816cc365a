"""Weight-only int8 / int4 quantization of a pruned model through optimum-quanto (the `hf-prune[quant]` extra).

Pruning removes whole structures; quantization then shrinks what is left. They compose: the pruned model (stock or
pruned format) has its `nn.Linear` layers replaced by quanto's quantized ones, and is saved the way optimum-quanto
saves transformers models: safetensors weights plus `quanto_qmap.json`, which says how to re-quantize each layer on
load. `lm_head` stays in the model's dtype by default: it is tied to the embeddings in most small models, and keeping
it exact keeps the tie.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from transformers import PreTrainedModel

from ..errors import InvalidPruningError, MissingDependencyError

QUANTIZATION_MAP_NAME = "quanto_qmap.json"  # optimum-quanto's name, so its own loader reads our checkpoints
WEIGHT_TYPES = {"int8": "qint8", "int4": "qint4"}
DEFAULT_EXCLUDE = ("lm_head",)
INSTALL_HINT = "pip install 'hf-prune[quant]'"


def _quanto_installed() -> bool:
    return importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.quanto") is not None


def require_quanto():
    """optimum.quanto, or a one-line `MissingDependencyError` saying what to install."""
    if not _quanto_installed():
        raise MissingDependencyError(f"quantization needs optimum-quanto: {INSTALL_HINT}")
    import optimum.quanto

    return optimum.quanto


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether `model` holds quanto-quantized layers."""
    return _quanto_installed() and bool(require_quanto().quantization_map(model))


def quantize_weights(
    model: PreTrainedModel, weights: str = "int8", *, exclude: tuple[str, ...] = DEFAULT_EXCLUDE
) -> PreTrainedModel:
    """Quantize the weights of `model`'s linear layers in place to `"int8"` or `"int4"` and freeze them.

    Activations stay in the model's dtype (weight-only quantization). `exclude` holds module-name patterns to keep
    unquantized (default: `lm_head`). Save the result with `save_pruned(..., quantize=...)`, which quantizes the
    checkpoint it writes, or `save_quantized`.

    Example:

    ```python
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.quantization import quantize_weights
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> quantized = quantize_weights(hf_prune.remove_layers(model, [1]), "int8")
    >>> type(quantized.model.layers[0].mlp.up_proj).__name__, type(quantized.lm_head).__name__
    ('QLinear', 'Linear')

    ```
    """
    if weights not in WEIGHT_TYPES:
        raise InvalidPruningError(f"unknown quantization {weights!r}; choose one of {', '.join(WEIGHT_TYPES)}")
    quanto = require_quanto()
    if is_quantized(model):
        raise InvalidPruningError("the model is quantized already")
    quanto.quantize(model, weights=getattr(quanto, WEIGHT_TYPES[weights]), exclude=list(exclude) or None)
    quanto.freeze(model)
    return model


def quantization_facts(model: PreTrainedModel, weights: str, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> dict:
    """What `pruning.json` records about the quantization of `model`."""
    import importlib.metadata

    layers = require_quanto().quantization_map(model)
    return {
        "backend": "optimum-quanto",
        "backend_version": importlib.metadata.version("optimum-quanto"),
        "weights": weights,
        "activations": None,
        "excluded": list(exclude),
        "quantized_layers": len(layers),
    }


def save_quantized(model: PreTrainedModel, directory: str | Path) -> None:
    """Write a quantized model as optimum-quanto does: safetensors weights, config, and `quanto_qmap.json`."""
    quanto = require_quanto()
    directory = Path(directory)
    if model.config.tie_word_embeddings and any(
        isinstance(module, quanto.QModuleMixin) for module in (model.get_input_embeddings(), model.get_output_embeddings())
    ):
        model.config.tie_word_embeddings = False  # a quantized lm_head is no longer the embedding matrix
    model.save_pretrained(directory)
    (directory / QUANTIZATION_MAP_NAME).write_text(json.dumps(quanto.quantization_map(model), indent=2))


def is_quantized_checkpoint(directory: str | Path) -> bool:
    """Whether `directory` holds a checkpoint written by `save_quantized` (or by optimum-quanto)."""
    return (Path(directory) / QUANTIZATION_MAP_NAME).is_file()


def load_quantized(directory: str | Path) -> PreTrainedModel:
    """Load a quantized checkpoint (stock or pruned format): build the model empty, re-quantize, load the weights.

    Example:

    ```python
    >>> import tempfile
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.quantization import load_quantized
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> directory = tempfile.mkdtemp() + "/two-layers-int8"
    >>> hf_prune.save_pruned(hf_prune.remove_layers(model, [1]), directory, quantize="int8").quantization["weights"]
    'int8'
    >>> type(load_quantized(directory).model.layers[1].self_attn.q_proj).__name__
    'QLinear'

    ```
    """
    require_quanto()
    from optimum.quanto import QuantizedModelForCausalLM

    return QuantizedModelForCausalLM.from_pretrained(str(directory))._wrapped
