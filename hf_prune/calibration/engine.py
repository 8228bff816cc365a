"""The activation-collection engine every scoring method shares.

A method describes what it needs as `Statistic` objects: each names the modules whose inputs and outputs it must see,
and folds every batch into float64 running sums as the forward pass goes, so no hidden state is ever kept beyond the
batch that produced it. Sums (not means) make the state reducible: statistics gathered by several processes, or layer
by layer, add up to exactly what one pass over all the data gives.

`collect` drives a plain forward pass with hooks, or, for layers whose weights stay on disk (`StreamedLayers`), the
layer-streaming driver (`streaming.py`), which calls the same hooks one layer at a time. Under several processes each runs a share of
the batches and the sums are added (`distributed.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..checkpoint.layer_source import LayerSource, as_layer_source
from .data import CalibrationData
from .distributed import all_reduce_sums, is_main_process, shard
from .hooks import attach_hooks
from .streaming import stream_collect


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The decoder layers of a Llama-family model (stock or pruned)."""
    return model.base_model.layers


def tokens_of(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`(batch, seq, features)` -> `(tokens, features)` in float64, keeping only the positions `mask` marks."""
    tensor = tensor.detach()
    flat = tensor.reshape(-1, tensor.shape[-1]) if mask is None else tensor[mask.to(tensor.device)]
    return flat.to(torch.float64)


class Statistic(ABC):
    """Float64 running sums over calibration tokens, fed one batch at a time.

    Subclasses name the modules they watch (`targets`), fold each batch into tensors kept in `self.sums`
    (`update`), and turn the sums into scores afterwards. Everything in `self.sums` must be a sum over tokens or
    batches, so that states from several processes or passes combine by addition.

    Example:

    ```python
    >>> class TokenCount(Statistic):
    ...     def targets(self, model):
    ...         return {"embed": model.base_model.embed_tokens}
    ...     def update(self, key, inputs, output, mask, batch_index):
    ...         self.add("tokens", torch.tensor(float(tokens_of(output, mask).shape[0])))

    ```
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    @abstractmethod
    def targets(self, model: PreTrainedModel) -> dict[str, nn.Module]:
        """The modules to watch, by the key `update` will receive."""

    @abstractmethod
    def update(
        self,
        key: str,
        inputs: torch.Tensor,
        output: torch.Tensor,
        mask: torch.Tensor | None,
        batch_index: int,
    ) -> None:
        """Fold one module's input and output for one batch into the sums."""

    def add(self, name: str, value: torch.Tensor) -> None:
        """Accumulate `value` (moved to CPU float64) into `self.sums[name]`."""
        value = value.detach().to("cpu", torch.float64)
        if name in self.sums:
            self.sums[name] += value
        else:
            self.sums[name] = value.clone()

    def finish_batch(self, batch_index: int) -> None:
        """Called once a batch has gone through every watched module (drop anything kept for it)."""


def input_device(model: PreTrainedModel) -> torch.device:
    """Where input ids must go: the embedding's device, or for a model dispatched with `device_map`, the device
    Accelerate runs the embedding on (the CPU when its weights were offloaded to disk)."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        embedding = next(name for name, module in model.named_modules() if module is model.get_input_embeddings())
        placement = next(
            (device for name, device in device_map.items() if embedding == name or embedding.startswith(name + ".") or name == ""),
            "cpu",
        )
        if placement in ("cpu", "disk"):
            return torch.device("cpu")
        return torch.device("cuda", placement) if isinstance(placement, int) else torch.device(placement)
    return model.get_input_embeddings().weight.device


@torch.no_grad()
def collect(
    model: PreTrainedModel | LayerSource,
    data: CalibrationData,
    statistics: Sequence[Statistic],
    *,
    batch_size: int = 1,
    batches: Sequence[tuple[int, tuple[torch.Tensor, torch.Tensor | None]]] | None = None,
    progress: bool = True,
    description: str = "calibrating",
) -> None:
    """Run the calibration windows through `model` once, feeding every statistic through forward hooks.

    Only the decoder runs (the language-model head is skipped: no statistic needs logits). Hooks are always
    removed, even when a batch fails. Launched in several processes (torchrun, accelerate launch), each process runs
    a contiguous share of the batches and the statistics' sums are added across processes at the end, so every
    process ends with the statistics of all the data.

    Args:
        batches: `(batch_index, (input_ids, attention_mask))` pairs to run instead of this process's share of
            `data`.

    Example:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.calibration import CalibrationData
    >>> from hf_prune.calibration.engine import collect
    >>> from hf_prune.scoring.block_influence.method import LayerSimilarity
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
    ...     num_hidden_layers=3, num_attention_heads=4)).eval()
    >>> data = CalibrationData(torch.randint(0, 64, (4, 16)), source="random")
    >>> similarity = LayerSimilarity()
    >>> collect(model, data, [similarity], batch_size=2, progress=False)
    >>> similarity.num_layers
    3

    ```
    """
    if batches is None:
        batches = shard(list(enumerate(data.batches(batch_size))))
    source = as_layer_source(model)
    if source.streamed:
        stream_collect(source, batches, statistics, progress=progress, description=description)
    else:
        _hooked_forward(source.structure, batches, statistics, progress=progress, description=description)
    for statistic in statistics:
        statistic.sums = all_reduce_sums(statistic.sums)


def _hooked_forward(model, batches, statistics, *, progress: bool, description: str) -> None:
    """One forward pass of the decoder over `batches` with every statistic's hooks attached."""
    current: dict = {}
    handles = attach_hooks(
        [(statistic, key, module) for statistic in statistics for key, module in statistic.targets(model).items()],
        current,
    )
    device = input_device(model)
    try:
        for batch_index, (input_ids, attention_mask) in tqdm(
            batches, desc=description, unit="batch", disable=not progress or not is_main_process()
        ):
            current["batch"] = batch_index
            current["mask"] = None if attention_mask is None else attention_mask.bool()
            if attention_mask is not None:
                attention_mask = attention_mask.to(device)
            model.base_model(input_ids=input_ids.to(device), attention_mask=attention_mask, use_cache=False)
            for statistic in statistics:
                statistic.finish_batch(batch_index)
    finally:
        for handle in handles:
            handle.remove()
