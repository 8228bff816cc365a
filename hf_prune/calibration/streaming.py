"""Layer-streaming calibration: models larger than memory, one decoder layer in memory at a time.

`checkpoint.load_streamed` returns a `PrunedForCausalLM` on the meta device that knows where its weights are on disk. Scoring
methods use it like any model: `collect` sees that its weights are on disk and runs `stream_collect` instead of a
forward pass. That embeds all calibration windows (reading only the embedding rows they use), then for each decoder
layer reads its tensors, slices them to what the model has kept so far, runs every window's hidden states through it
with the statistics' hooks attached, and drops it. Peak memory is about one layer plus the hidden states of the
calibration windows. Surgery on such a model stays on the meta device (it only changes the config and the
provenance trace), so iterative methods re-stream the pruned model at every shot, and the checkpoint is written layer
by layer from the source files.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..architecture import PrunedForCausalLM
from ..architecture.modeling_pruned import PrunedRotaryEmbedding
from ..checkpoint.streamed import is_streamed, load_streamed, materialize_layer
from ..checkpoint.tensors import CheckpointTensors
from .distributed import is_main_process
from .hooks import attach_hooks

__all__ = ["is_streamed", "load_streamed", "stream_collect"]


@torch.no_grad()
def stream_collect(model: PrunedForCausalLM, batches, statistics, *, progress: bool, description: str) -> None:
    """Feed `statistics` from the model's layers, materialised one at a time (called by `collect`)."""
    source, trace, config = model.stream_source, model.pruning_trace, model.config
    tensors = CheckpointTensors(source.directory)
    rotary = PrunedRotaryEmbedding(config).to(source.device)
    names = {id(module): name for name, module in model.named_modules()}
    targets = [
        (statistic, key, names[id(module)])
        for statistic in statistics
        for key, module in statistic.targets(model).items()
    ]

    # Embed every window of this process's share, reading only the embedding rows they use.
    states, masks = [], []
    for batch_index, (input_ids, attention_mask) in batches:
        embedded = tensors.read_rows("model.embed_tokens.weight", input_ids).to(source.device, source.dtype)
        states.append(embedded.view(*input_ids.shape, -1))
        masks.append(None if attention_mask is None else attention_mask.to(source.device))
    position_ids = [torch.arange(state.shape[1], device=source.device)[None] for state in states]
    layer_masks = [
        model.model.causal_mask_mapping(state, mask, None, positions)
        for state, mask, positions in zip(states, masks, position_ids)
    ]
    position_embeddings = [rotary(state, positions) for state, positions in zip(states, position_ids)]

    progress_bar = tqdm(
        range(config.num_hidden_layers), desc=description, unit="layer", disable=not progress or not is_main_process()
    )
    for index in progress_bar:
        layer = materialize_layer(tensors, trace, index, config, source)
        prefix = f"model.layers.{index}"
        layer_targets = [
            (statistic, key, layer if name == prefix else layer.get_submodule(name[len(prefix) + 1 :]))
            for statistic, key, name in targets
            if name == prefix or name.startswith(prefix + ".")
        ]
        current: dict = {}
        hooks = attach_hooks(layer_targets, current)
        try:
            for position, (batch_index, (_, attention_mask)) in enumerate(batches):
                current["batch"] = batch_index
                current["mask"] = None if attention_mask is None else attention_mask.bool()
                states[position] = layer(
                    states[position],
                    attention_mask=layer_masks[position].get(layer.layer_type),
                    position_embeddings=position_embeddings[position],
                    position_ids=position_ids[position],
                )
        finally:
            for handle in hooks:
                handle.remove()
        del layer
    for batch_index, _ in batches:
        for statistic in statistics:
            statistic.finish_batch(batch_index)
