"""One way to reach a model's decoder layers, whether its weights are in memory or stay on disk.

Scoring, surgery and saving read layers through a `LayerSource`, never through `model.model.layers`:

- `ModelLayers` wraps a model in memory; its layers are its own.
- `StreamedLayers` (from `load_streamed`) leaves the weights in the checkpoint's safetensors. `layers()` reads one
  decoder layer, slices it to what has been kept so far, yields it and lets it go, so peak memory is about one layer
  whatever the model's size. Its `structure` is a meta-device skeleton that gives module names and shapes, never
  weights; it is not a model, so code that treats it as one fails at once instead of computing on meta tensors.

Both apply a plan (`apply_plan`: a streamed source changes only its skeleton and trace) and write their weights
(`save_weights`: a streamed source writes layer by layer from its source files). `as_layer_source` takes either a
model or a source, so every public function accepts both.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import GenerationConfig, PreTrainedModel

from ..architecture import PrunedConfig, PrunedForCausalLM
from ..architecture.families import pruned_config_from, to_pruned
from ..architecture.modeling_pruned import PrunedDecoderLayer, PrunedRotaryEmbedding
from ..surgery import PruningPlan, apply_plan
from ..surgery.apply import prune_layer
from ..surgery.trace import LayerTrace, PruningTrace, trace_of
from .tensors import CheckpointTensors
from .validate import check_checkpoint


class LayerSource(ABC):
    """A model's decoder layers, in memory (`ModelLayers`) or on disk (`StreamedLayers`).

    Attributes:
        structure: the model whose modules statistics hook and whose config describes the layers: the model itself
            in memory, a meta-device skeleton when streamed. Read weights through `layers()`, never here.
        streamed: whether `layers()` reads the weights from disk.
    """

    structure: PreTrainedModel
    streamed: bool = False

    @property
    def config(self):
        return self.structure.config

    @property
    def dtype(self) -> torch.dtype:
        return self.structure.dtype

    @property
    def name_or_path(self) -> str:
        return self.structure.name_or_path

    @property
    def pruning_trace(self) -> PruningTrace:
        """What the layers kept of the source model (the identity before any surgery)."""
        return trace_of(self.structure)

    @property
    def layer_configs(self) -> list[PrunedConfig]:
        """Every decoder layer's shape (heads, KV heads, head_dim, MLP width, skipped blocks), without weights."""
        return list(pruned_config_from(self.structure.config).per_layer_config)

    @abstractmethod
    def layers(self) -> Iterator[tuple[int, nn.Module]]:
        """`(index, decoder layer)` with real weights, one at a time (a streamed layer is released after use)."""

    @abstractmethod
    def to_pruned(self) -> LayerSource:
        """The same layers as a `PrunedForCausalLM`, the form surgery works on."""

    @abstractmethod
    def apply_plan(self, plan: PruningPlan) -> LayerSource:
        """The layers that remain after `plan` (see `hf_prune.apply_plan`)."""

    @abstractmethod
    def save_weights(self, to_write: PreTrainedModel, directory: Path) -> None:
        """Write config, generation config and weights of `to_write` (this source's layers in the class to save)."""

    @abstractmethod
    def unwrap(self) -> PreTrainedModel | LayerSource:
        """What a pruning result hands back: the model when in memory, the source itself when streamed."""


class ModelLayers(LayerSource):
    """The layers of a model in memory.

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.checkpoint import as_layer_source
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                                      num_attention_heads=4))
    >>> source = as_layer_source(model)
    >>> [(index, type(layer).__name__) for index, layer in source.layers()]
    [(0, 'LlamaDecoderLayer'), (1, 'LlamaDecoderLayer')]
    >>> source.unwrap() is model
    True

    ```
    """

    def __init__(self, model: PreTrainedModel) -> None:
        self.structure = model

    def layers(self) -> Iterator[tuple[int, nn.Module]]:
        yield from enumerate(self.structure.base_model.layers)

    def to_pruned(self) -> ModelLayers:
        return ModelLayers(to_pruned(self.structure))

    def apply_plan(self, plan: PruningPlan) -> ModelLayers:
        return ModelLayers(apply_plan(self.structure, plan))

    def save_weights(self, to_write: PreTrainedModel, directory: Path) -> None:
        to_write.save_pretrained(directory)

    def unwrap(self) -> PreTrainedModel:
        return self.structure


class StreamedLayers(LayerSource):
    """Layers whose weights stay in a checkpoint on disk until one is needed (see the module docstring).

    Use `load_streamed` to make one.
    """

    streamed = True

    def __init__(self, directory: Path, skeleton: PrunedForCausalLM, dtype: torch.dtype, device: torch.device) -> None:
        self.directory, self.structure, self.device = Path(directory), skeleton, torch.device(device)
        self.weights_dtype = dtype
        self.tensors = CheckpointTensors(self.directory)
        # The rotary tables are not weights: compute them for real, so the skeleton gives position embeddings.
        decoder, config = skeleton.model, skeleton.config
        decoder.rotary_emb = PrunedRotaryEmbedding(config).to(self.device)
        if decoder.local_rotary_emb is not None:
            decoder.local_rotary_emb = PrunedRotaryEmbedding(config, local=True).to(self.device)

    def __repr__(self) -> str:
        return f"StreamedLayers({str(self.directory)!r}, layers={self.config.num_hidden_layers}, dtype={self.weights_dtype})"

    @property
    def name_or_path(self) -> str:
        return self.structure.name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str) -> None:
        self.structure.name_or_path = value

    def layers(self) -> Iterator[tuple[int, PrunedDecoderLayer]]:
        for index in range(self.config.num_hidden_layers):
            layer = self.read_layer(index)
            yield index, layer
            del layer

    def read_layer(self, index: int) -> PrunedDecoderLayer:
        """Decoder layer `index`, read from the source checkpoint and sliced to what the layers kept."""
        trace = self.pruning_trace
        kept = trace.layers[index]
        source_config = trace.source_config
        prefix = f"model.layers.{kept.source_layer}."
        state = {name[len(prefix) :]: self.tensors.read(name) for name in self.tensors.names() if name.startswith(prefix)}
        identity = PruningTrace.identity(source_config).layers[kept.source_layer]
        _, state, _ = prune_layer(
            kept.source_layer,
            source_config.per_layer_config[kept.source_layer],
            source_config,
            trace.to_plan(),
            state,
            LayerTrace(**vars(identity)),
        )
        with torch.device("meta"):
            layer = PrunedDecoderLayer(self.config, index)
        layer.load_state_dict(state, strict=True, assign=True)
        if layer.self_attn is not None and layer.self_attn.rotary_index is not None:
            layer.self_attn.rotary_index = layer.self_attn.compute_rotary_index()
        return layer.to(self.device, self.weights_dtype)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The input embeddings of `input_ids`, reading only the rows they use."""
        rows = self.tensors.read_rows("model.embed_tokens.weight", input_ids).to(self.device, self.weights_dtype)
        if self.config.embedding_multiplier is not None:  # as PrunedScaledEmbedding does
            rows = rows * torch.tensor(self.config.embedding_multiplier).to(self.weights_dtype)
        return rows.view(*input_ids.shape, -1)

    def to_pruned(self) -> StreamedLayers:
        return self

    def apply_plan(self, plan: PruningPlan) -> StreamedLayers:
        return StreamedLayers(self.directory, apply_plan(self.structure, plan), self.weights_dtype, self.device)

    def unwrap(self) -> StreamedLayers:
        return self

    def save_weights(self, to_write: PreTrainedModel, directory: Path, max_shard_bytes: int = 2**30) -> None:
        """Write `to_write`'s config, generation config and weights into `directory`, one layer at a time.

        `to_write` is the meta-device model to save (pruned or stock class); its tensors come from the source
        checkpoint, sliced as the trace says. Shards hold at most `max_shard_bytes` (what memory holds at once).
        """
        from transformers.dynamic_module_utils import custom_object_save

        config = to_write.config
        config.architectures = [type(to_write).__name__]
        config.dtype = self.weights_dtype
        config.save_pretrained(directory)
        to_write.generation_config.save_pretrained(directory)
        if isinstance(to_write, PrunedForCausalLM):
            custom_object_save(to_write, directory, config=config)

        def tensors_in_order():
            yield "model.embed_tokens.weight", self.tensors.read("model.embed_tokens.weight")
            for index, layer in self.layers():
                for name, tensor in layer.state_dict().items():
                    yield f"model.layers.{index}.{name}", tensor
            yield "model.norm.weight", self.tensors.read("model.norm.weight")
            if not config.tie_word_embeddings:
                yield "lm_head.weight", self.tensors.read("lm_head.weight")

        shards, shard, shard_bytes = [], {}, 0
        for name, tensor in tensors_in_order():
            tensor = tensor.to("cpu", self.weights_dtype).contiguous()
            if shard and shard_bytes + tensor.numel() * tensor.element_size() > max_shard_bytes:
                shards.append(_write_shard(directory, len(shards), shard))
                shard, shard_bytes = {}, 0
            shard[name] = tensor
            shard_bytes += tensor.numel() * tensor.element_size()
        shards.append(_write_shard(directory, len(shards), shard))
        _name_shards(directory, shards)


def as_layer_source(model: PreTrainedModel | LayerSource) -> LayerSource:
    """`model` as a layer source (a source is returned as it is).

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> import hf_prune
    >>> from hf_prune.checkpoint import as_layer_source
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> source = as_layer_source(model).to_pruned().apply_plan(hf_prune.PruningPlan(removed_layers=[1]))
    >>> source.pruning_trace.removed_layers, type(source.unwrap()).__name__
    ([1], 'PrunedForCausalLM')
    >>> as_layer_source(source) is source
    True

    ```
    """
    return model if isinstance(model, LayerSource) else ModelLayers(model)


def load_streamed(
    directory: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> StreamedLayers:
    """The layers of the checkpoint in `directory`, left on disk until each is needed (see the module docstring).

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
    >>> source = load_streamed(directory)  # nothing is read yet
    >>> len(get_method("block-influence").score(source, data, progress=False).layer_scores)
    3
    >>> for index, layer in source.layers():  # each layer read from disk, then released
    ...     print(index, layer.mlp.up_proj.weight.device, tuple(layer.mlp.up_proj.weight.shape))
    0 cpu (64, 32)
    1 cpu (64, 32)
    2 cpu (64, 32)
    >>> source.structure.model.layers[0].mlp.up_proj.weight.device  # the skeleton has shapes, not weights
    device(type='meta')

    ```
    """
    directory = Path(directory)
    config = pruned_config_from(check_checkpoint(directory))
    dtype = dtype or CheckpointTensors(directory).read("model.norm.weight").dtype
    config.dtype = dtype
    with torch.device("meta"):
        # Meta tensors in the streamed dtype (rotary frequencies stay float32, as from_pretrained leaves them), so
        # `skeleton.dtype` is the dtype of the weights it stands for.
        skeleton = PrunedForCausalLM._from_config(config, dtype=dtype)
    skeleton.name_or_path = str(directory)
    if (directory / "generation_config.json").is_file():
        skeleton.generation_config = GenerationConfig.from_pretrained(directory)
    return StreamedLayers(directory, skeleton, dtype, torch.device(device))


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
