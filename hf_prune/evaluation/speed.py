"""Speed and memory of a model at inference: prefill and decode throughput, peak memory, KV cache per token."""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager

import psutil
import torch
from transformers import DynamicCache, PreTrainedModel

from ..architecture.modeling_pruned import CACHE_NAME
from ..calibration.engine import input_device
from ..provenance.size import count_parameters, kv_cache_bytes_per_token


@contextmanager
def peak_memory(device: torch.device):
    """Track how much memory a block needs beyond what was in use when it started.

    Yields a dict whose `"extra_bytes"` is filled in when the block ends: on a GPU the CUDA allocator's peak minus
    what was allocated at the start; on the CPU the process's peak resident set size (sampled every millisecond by a
    background thread) minus the resident size at the start.
    """
    result = {"extra_bytes": 0}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result["extra_bytes"] = max(0, torch.cuda.max_memory_allocated(device) - start)
        return
    process = psutil.Process()
    start = process.memory_info().rss
    peak = {"rss": start}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["rss"] = max(peak["rss"], process.memory_info().rss)
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["extra_bytes"] = max(0, max(peak["rss"], process.memory_info().rss) - start)


def model_bytes(model: PreTrainedModel) -> int:
    """Bytes of the model's parameters and buffers (tied weights counted once)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_length(cache: DynamicCache) -> int:
    """Tokens a cache has seen, read from its layers that hold keys (an attention-free layer's holds none)."""
    return max((layer.get_seq_length() for layer in cache.layers if hasattr(layer, "get_seq_length")), default=0)


def measured_kv_bytes_per_token(cache: DynamicCache, tokens: int) -> int:
    """Bytes of keys and values actually held in a cache, per cached token."""
    total = 0
    for layer in cache.layers:
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if tensor is not None and tensor.numel():
                total += tensor.numel() * tensor.element_size()
    return total // tokens


@torch.no_grad()
def measure_speed(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    *,
    new_tokens: int = 64,
    repeats: int = 3,
) -> dict:
    """Greedy inference speed for one prompt (batch 1), with the model's KV cache.

    Prefill is one forward pass over the prompt; decode feeds back the arg-max token `new_tokens` times. Each is
    timed `repeats` times after one warm-up run and the median is reported.

    Returns `prefill_tokens_per_s`, `decode_tokens_per_s`, `peak_memory_bytes` (the model's weights plus the peak
    extra memory the measurement needed: activations, cache, temporaries; so that two models loaded in the same
    process are measured apart), `kv_cache_bytes_per_token` (measured from the cache; the config's figure is
    returned beside it), `parameters`, and the settings used.

    Example:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.evaluation import measure_speed
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                                      num_attention_heads=4)).eval()
    >>> speed = measure_speed(model, torch.randint(0, 64, (1, 16)), new_tokens=8, repeats=1)
    >>> speed["decode_tokens_per_s"] > 0, speed["kv_cache_bytes_per_token"]
    (True, 512)

    ```
    """
    device = input_device(model)
    prompt_ids = prompt_ids.reshape(1, -1).to(device)

    def prefill():
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=prompt_ids, **{CACHE_NAME: cache}, use_cache=True).logits
        return cache, logits[:, -1:].argmax(-1)

    def decode(cache, token):
        for _ in range(new_tokens):
            token = model(input_ids=token, **{CACHE_NAME: cache}, use_cache=True).logits[:, -1:].argmax(-1)
        return cache

    prefill_times, decode_times = [], []
    with peak_memory(device) as memory:
        decode(*prefill())  # warm-up
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            cache, token = prefill()
            _synchronize(device)
            middle = time.perf_counter()
            cache = decode(cache, token)
            _synchronize(device)
            end = time.perf_counter()
            prefill_times.append(middle - start)
            decode_times.append(end - middle)
    cached_tokens = prompt_ids.shape[1] + new_tokens
    return {
        "prefill_tokens_per_s": prompt_ids.shape[1] / statistics.median(prefill_times),
        "decode_tokens_per_s": new_tokens / statistics.median(decode_times),
        "peak_memory_bytes": model_bytes(model) + memory["extra_bytes"],
        "weights_bytes": model_bytes(model),
        "kv_cache_bytes_per_token": measured_kv_bytes_per_token(cache, cached_tokens),
        "kv_cache_bytes_per_token_config": kv_cache_bytes_per_token(model.config, model.dtype),
        "parameters": count_parameters(model),
        "prompt_tokens": prompt_ids.shape[1],
        "new_tokens": new_tokens,
        "repeats": repeats,
        "device": str(device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }
