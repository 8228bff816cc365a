"""A description of the machine a measurement was taken on, recorded next to every number."""

from __future__ import annotations

import datetime
import os
import platform

import torch
import transformers


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """CPU, core count, GPU, library versions and the UTC date: enough to know whether two numbers compare.

    Example:

    ```python
    >>> from hf_prune.evaluation import describe_machine
    >>> sorted(describe_machine())[:3]
    ['cores', 'cpu', 'date']

    ```
    """
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }


def machine_summary(machine: dict | None = None) -> str:
    """One line, e.g. `"Intel Xeon (2 cores, 1 torch thread, no GPU), torch 2.13.0, 2026-11-23"`."""
    machine = machine or describe_machine()
    gpu = machine["gpu"] or "no GPU"
    threads = machine.get("torch_threads")
    threads = f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{machine['cpu']} ({machine['cores']} cores{threads}, {gpu}), torch {machine['torch']}, {machine['date']}"
