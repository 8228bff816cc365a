"""Forward hooks that feed statistics; shared by the in-memory and the layer-streaming drivers."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def primary_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a module was called with (first positional argument, or `hidden_states=`)."""
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    return next(value for value in kwargs.values() if isinstance(value, torch.Tensor))


def primary_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def attach_hooks(targets: Iterable[tuple], current: dict) -> list[RemovableHandle]:
    """Hook every `(statistic, key, module)`: each call feeds `statistic.update(key, input, output, mask, batch)`,
    reading the batch index and token mask from `current`, which the driver updates before each batch."""
    handles = []
    for statistic, key, module in targets:

        def hook(module: nn.Module, args, kwargs, output, statistic=statistic, key=key):
            statistic.update(key, primary_input(args, kwargs), primary_output(output), current["mask"], current["batch"])

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    return handles
