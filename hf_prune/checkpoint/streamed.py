"""Models whose weights stay on disk: a meta-device `PrunedForCausalLM` that knows where its safetensors are.

Scoring streams such a model through calibration one layer at a time (`calibration/streaming.py`); surgery on it only
changes its config and provenance trace; `save_pruned` writes its checkpoint layer by layer from the source files
(`write_streamed_weights`). Peak memory is about one layer whatever the model's size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GenerationConfig, PreTrainedModel

from ..architecture import PrunedConfig, PrunedForCausalLM
from ..architecture.families import pruned_config_from
from ..architecture.modeling_pruned import PrunedDecoderLayer
from ..surgery.apply import prune_layer
from ..surgery.trace import LayerTrace, PruningTrace
from .tensors import CheckpointTensors
from .validate import check_checkpoint


@dataclass
class StreamSource:
    """Where a streamed model's weights live, and how to materialise them."""

    directory: Path
    dtype: torch.dtype
    device: torch.device


def load_streamed(
    directory: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> PrunedForCausalLM:
    """A model whose weights stay on disk until a layer is needed (see the module docstring).

    Example:

    ```python
    >>> import tempfile
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.calibration import CalibrationData
    >>> directory = tempfile.mkdtemp()
    >>> LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                              num_attention_heads=4)).save_pretrained(directory)
    >>> data = CalibrationData(torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0)), source="random")
    >>> from hf_prune.checkpoint import load_streamed
    >>> from hf_prune.scoring import get_method
    >>> model = load_streamed(directory)  # a meta-device model: nothing is read yet
    >>> model.model.layers[0].mlp.up_proj.weight.device
    device(type='meta')
    >>> len(get_method("block-influence").score(model, data, progress=False).layer_scores)
    3

    ```
    """
    directory = Path(directory)
    config = pruned_config_from(check_checkpoint(directory))
    stored = CheckpointTensors(directory).read("model.norm.weight").dtype
    dtype = dtype or stored
    config.dtype = dtype
    with torch.device("meta"):
        # Meta tensors in the streamed dtype (rotary frequencies stay float32, as from_pretrained leaves them), so
        # `model.dtype` is the dtype of the weights it stands for.
        model = PrunedForCausalLM._from_config(config, dtype=dtype)
    model.stream_source = StreamSource(directory, dtype, torch.device(device))
    model.pruning_trace = PruningTrace.identity(config)
    model.name_or_path = str(directory)
    if (directory / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model


def is_streamed(model) -> bool:
    return getattr(model, "stream_source", None) is not None


def materialize_layer(
    tensors: CheckpointTensors, trace: PruningTrace, index: int, config: PrunedConfig, source: StreamSource
) -> PrunedDecoderLayer:
    """Decoder layer `index` of the pruned model, read from the source checkpoint and sliced to what it kept."""
    kept = trace.layers[index]
    source_config = trace.source_config
    prefix = f"model.layers.{kept.source_layer}."
    state = {name[len(prefix) :]: tensors.read(name) for name in tensors.names() if name.startswith(prefix)}
    plan = trace.to_plan()
    identity = PruningTrace.identity(source_config).layers[kept.source_layer]
    _, state, _ = prune_layer(
        kept.source_layer,
        source_config.per_layer_config[kept.source_layer],
        source_config,
        plan,
        state,
        LayerTrace(**vars(identity)),
    )
    with torch.device("meta"):
        layer = PrunedDecoderLayer(config, index)
    layer.load_state_dict(state, strict=True, assign=True)
    if layer.self_attn is not None and layer.self_attn.rotary_index is not None:
        layer.self_attn.rotary_index = layer.self_attn.compute_rotary_index()
    return layer.to(source.device, source.dtype)




def layers_with_weights(model: PreTrainedModel):
    """`(index, decoder layer)` with real weights: the model's own layers, or, for a streamed model, each layer read
    from disk (sliced to what the model kept) one at a time, for scorers that read weights.

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.checkpoint import layers_with_weights, load_streamed
    >>> directory = tempfile.mkdtemp()
    >>> LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                              num_attention_heads=4)).save_pretrained(directory)
    >>> for index, layer in layers_with_weights(load_streamed(directory)):
    ...     print(index, layer.mlp.up_proj.weight.device, tuple(layer.mlp.up_proj.weight.shape))
    0 cpu (64, 32)
    1 cpu (64, 32)

    ```
    """
    if not is_streamed(model):
        yield from enumerate(model.base_model.layers)
        return
    tensors = CheckpointTensors(model.stream_source.directory)
    for index in range(model.config.num_hidden_layers):
        yield index, materialize_layer(tensors, model.pruning_trace, index, model.config, model.stream_source)


def write_streamed_weights(
    model: PreTrainedModel, trace: PruningTrace, source: StreamSource, directory: Path, max_shard_bytes: int = 2**30
) -> None:
    """Write `model`'s config, generation config and weights into `directory`, reading and slicing one layer at a time.

    `model` is the meta-device model to write (pruned or stock class); its tensors come from the source checkpoint,
    sliced as `trace` says. Shards hold at most `max_shard_bytes` (what memory holds at once while writing).
    """
    from transformers.dynamic_module_utils import custom_object_save

    tensors = CheckpointTensors(source.directory)
    config = model.config
    config.architectures = [type(model).__name__]
    config.dtype = source.dtype
    config.save_pretrained(directory)
    model.generation_config.save_pretrained(directory)
    if isinstance(model, PrunedForCausalLM):
        custom_object_save(model, directory, config=config)
    pruned_config = pruned_config_from(config) if not isinstance(config, PrunedConfig) else config

    def tensors_in_order():
        yield "model.embed_tokens.weight", tensors.read("model.embed_tokens.weight")
        for index in range(pruned_config.num_hidden_layers):
            layer = materialize_layer(tensors, trace, index, pruned_config, source)
            for name, tensor in layer.state_dict().items():
                yield f"model.layers.{index}.{name}", tensor
        yield "model.norm.weight", tensors.read("model.norm.weight")
        if not config.tie_word_embeddings:
            yield "lm_head.weight", tensors.read("lm_head.weight")

    shards, shard, shard_bytes = [], {}, 0
    for name, tensor in tensors_in_order():
        tensor = tensor.to("cpu", source.dtype).contiguous()
        if shard and shard_bytes + tensor.numel() * tensor.element_size() > max_shard_bytes:
            shards.append(_write_shard(directory, len(shards), shard))
            shard, shard_bytes = {}, 0
        shard[name] = tensor
        shard_bytes += tensor.numel() * tensor.element_size()
    shards.append(_write_shard(directory, len(shards), shard))
    _name_shards(directory, shards)


def _write_shard(directory: Path, number: int, tensors: dict[str, torch.Tensor]) -> tuple[Path, list[str], int]:
    path = directory / f"shard-{number:05d}.tmp"
    save_file(tensors, path, metadata={"format": "pt"})
    return path, list(tensors), sum(t.numel() * t.element_size() for t in tensors.values())


def _name_shards(directory: Path, shards: list[tuple[Path, list[str], int]]) -> None:
    """Give the shards transformers' names, and write the index when there is more than one."""
    if len(shards) == 1:
        shards[0][0].rename(directory / "model.safetensors")
        return
    weight_map = {}
    for number, (path, names, _) in enumerate(shards, start=1):
        final = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        path.rename(directory / final)
        weight_map.update({name: final for name in names})
    index = {"metadata": {"total_size": sum(size for _, _, size in shards)}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
