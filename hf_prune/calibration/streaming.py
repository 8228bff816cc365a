"""Layer-streaming calibration: models larger than memory, one decoder layer in memory at a time.

`collect` runs this driver for a `StreamedLayers` source (`checkpoint.load_streamed`) instead of a forward pass. It
embeds all calibration windows (reading only the embedding rows they use), then takes the source's layers one at a
time, runs every window's hidden states through each with the statistics' hooks attached, and lets it go. Peak
memory is about one layer plus the hidden states of the calibration windows. Surgery on a streamed source changes
only its skeleton and trace, so iterative methods re-stream the pruned layers at every shot, and the checkpoint is
written layer by layer from the source files.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..checkpoint.layer_source import StreamedLayers
from .distributed import is_main_process
from .hooks import attach_hooks

__all__ = ["stream_collect"]


@torch.no_grad()
def stream_collect(source: StreamedLayers, batches, statistics, *, progress: bool, description: str) -> None:
    """Feed `statistics` from the source's layers, read one at a time (called by `collect`)."""
    skeleton, config, device = source.structure, source.config, source.device
    names = {id(module): name for name, module in skeleton.named_modules()}
    targets = [
        (statistic, key, names[id(module)])
        for statistic in statistics
        for key, module in statistic.targets(skeleton).items()
    ]

    # Embed every window of this process's share.
    states = [source.embed(input_ids) for _, (input_ids, _) in batches]
    masks = [None if attention_mask is None else attention_mask.to(device) for _, (_, attention_mask) in batches]
    position_ids = [torch.arange(state.shape[1], device=device)[None] for state in states]
    layer_masks = [
        skeleton.model.causal_mask_mapping(state, mask, None, positions)
        for state, mask, positions in zip(states, masks, position_ids)
    ]
    position_embeddings = [
        skeleton.model.position_embeddings(state, positions) for state, positions in zip(states, position_ids)
    ]

    layers = tqdm(
        source.layers(), total=config.num_hidden_layers, desc=description, unit="layer",
        disable=not progress or not is_main_process(),
    )
    for index, layer in layers:
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
                    position_embeddings=position_embeddings[position][layer.layer_type],
                    position_ids=position_ids[position],
                )
        finally:
            for handle in hooks:
                handle.remove()
    for batch_index, _ in batches:
        for statistic in statistics:
            statistic.finish_batch(batch_index)
