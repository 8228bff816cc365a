"""Dense versus pruned, measured in the same run on the same tokens: what a pruning cost and what it bought."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..calibration.data import Text, load_text, tokenize
from ..calibration.distributed import is_main_process
from .machine import describe_machine, machine_summary
from .perplexity import perplexity
from .speed import measure_speed


def compare_models(
    dense: PreTrainedModel,
    pruned: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Text | str | None] = (None,),
    *,
    seq_len: int = 1024,
    max_windows: int | None = 16,
    batch_size: int = 1,
    speed: bool = False,
    prompt_tokens: int = 128,
    new_tokens: int = 64,
    progress: bool = True,
) -> dict:
    """Perplexity of both models on each text (same windows), and optionally their speed and memory.

    Returns the `evaluation` entry of `pruning.json`: `perplexity` (a list of per-text results with `dense` and
    `pruned`), `speed` (`dense` and `pruned` results of `measure_speed`), `machine` and `machine_details`.

    Example:

    ```python
    >>> import hf_prune
    >>> from hf_prune.evaluation import compare_models
    >>> loaded = hf_prune.load_model("smollm2-135m")
    >>> pruned = hf_prune.remove_layers(loaded.model, [20, 21, 22, 23])
    >>> result = compare_models(loaded.model, pruned, loaded.tokenizer, ["builtin-eval"], seq_len=128, max_windows=2,
    ...                         progress=False)
    >>> entry = result["perplexity"][0]
    >>> entry["text"], entry["windows"], entry["pruned"] > entry["dense"]
    ('builtin-eval', 2, True)

    ```
    """
    results = []
    loaded = [text if isinstance(text, Text) else load_text(text, "evaluation") for text in texts]
    for text in loaded:
        scores = {
            name: perplexity(
                model, tokenizer, text, seq_len=seq_len, max_windows=max_windows, batch_size=batch_size, progress=progress
            )
            for name, model in (("dense", dense), ("pruned", pruned))
        }
        results.append({**scores["dense"], "dense": scores["dense"]["perplexity"], "pruned": scores["pruned"]["perplexity"]})
        del results[-1]["perplexity"], results[-1]["nll"]
    machine = describe_machine()
    evaluation = {"perplexity": results, "machine": machine_summary(machine), "machine_details": machine}
    if speed and is_main_process():  # timing is per process: measure once
        prompt = torch.tensor(tokenize(tokenizer, loaded[0].text)[:prompt_tokens])
        evaluation["speed"] = {
            name: measure_speed(model, prompt, new_tokens=new_tokens)
            for name, model in (("dense", dense), ("pruned", pruned))
        }
    return evaluation
