"""Calibration over several processes: each runs a contiguous share of the batches, then the float64 sums are added.

Works under `torchrun` and `accelerate launch` (several GPUs with NCCL, or CPU processes with gloo). One detail matters
on CPU-only machines: Accelerate only recognises a multi-process CPU run when told it runs on the CPU, otherwise it
reports a single process; `process_state` takes care of that.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from accelerate import PartialState

T = TypeVar("T")


def process_state() -> PartialState:
    """Accelerate's view of this process (a single process unless launched by torchrun / accelerate launch)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    world_size = dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", state.num_processes))
    if state.num_processes != world_size:
        # Accelerate caches one state per process, and a worker forked by notebook_launcher / debug_launcher
        # inherits its parent's single-process one: start afresh from this worker's environment.
        PartialState._reset_state()
        state = PartialState(cpu=not torch.cuda.is_available())
    return state


def is_main_process() -> bool:
    """True in the one process that writes outputs and prints."""
    return process_state().is_main_process


def shard(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of `items` (all of them when running alone).

    Example:

    ```python
    >>> from hf_prune.calibration.distributed import shard
    >>> shard([0, 1, 2, 3, 4])  # with 2 processes: [0, 1, 2] in the first, [3, 4] in the second
    [0, 1, 2, 3, 4]

    ```
    """
    state = process_state()
    if state.num_processes == 1:
        return list(items)
    with state.split_between_processes(list(items)) as part:
        return list(part)


def _reduction_device(state: PartialState) -> torch.device:
    return state.device if state.backend == "nccl" else torch.device("cpu")


def all_reduce_sums(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add up float64 sums across processes; keys a process never produced count as zeros. Returns the totals."""
    state = process_state()
    if state.num_processes == 1:
        return sums
    shapes = {key: tuple(value.shape) for key, value in sums.items()}
    gathered: list[dict] = [None] * state.num_processes
    dist.all_gather_object(gathered, shapes)
    union: dict[str, tuple] = {}
    for part in gathered:
        union.update(part)
    device = _reduction_device(state)
    totals = {}
    for key in sorted(union):
        tensor = sums.get(key, torch.zeros(union[key], dtype=torch.float64)).to(device, torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        totals[key] = tensor.cpu()
    return totals


def finish_processes(success: bool) -> None:
    """Leave the process group cleanly: wait for the others after a success, then destroy it.

    Exiting with the gloo group still alive can abort a process at interpreter shutdown ("terminate called without
    an active exception"), which turns a successful run into a failed one.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if success:
        dist.barrier()
    dist.destroy_process_group()
