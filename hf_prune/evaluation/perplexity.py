"""Perplexity over fixed, non-overlapping windows: the one protocol every number in hf-prune uses.

The text is tokenized once without special tokens and cut by `calibration.token_windows`: for tokenizers that add
BOS by default (Llama 2, TinyLlama, stories260k) every window is BOS followed by `seq_len - 1` text tokens, and every
text token is predicted; for the others (SmolLM2, Qwen) a window is `seq_len` text tokens and its first token is
not predicted. Either way a window yields `seq_len - 1` predictions, and perplexity is
`exp(sum of token NLLs / number of predictions)`, the sum taken in float64.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..calibration.data import Text, adds_bos, load_text, token_windows, tokenize, tokens_sha256
from ..calibration.distributed import all_reduce_sums, is_main_process, shard
from ..calibration.engine import input_device


def window_nll(model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood (float64) of tokens 1..T-1 of each window, given the tokens before them."""
    with torch.no_grad():
        logits = model(input_ids=input_ids.to(input_device(model)), use_cache=False).logits[:, :-1]
    targets = input_ids[:, 1:].to(logits.device)
    nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    return nll.to(torch.float64).sum(dim=1).cpu()


def windows_perplexity(
    model: PreTrainedModel, windows: torch.Tensor, *, batch_size: int = 1, progress: bool = False, description: str = "perplexity"
) -> float:
    """Perplexity over already-cut windows (what `perplexity` does after tokenizing; benchmarks reuse windows).

    Under several processes each evaluates a share of the batches and the NLL sums are added.
    """
    total = torch.zeros((), dtype=torch.float64)
    batches = shard(windows.split(batch_size))
    for batch in tqdm(batches, desc=description, unit="batch", disable=not progress or not is_main_process()):
        total += window_nll(model, batch).sum()
    total = all_reduce_sums({"nll": total})["nll"]
    return math.exp(total.item() / (windows.shape[0] * (windows.shape[1] - 1)))


def evaluation_windows(
    tokenizer: PreTrainedTokenizerBase, text: Text, seq_len: int, max_windows: int | None = None
) -> torch.Tensor:
    """The fixed windows a text is evaluated on: the first `max_windows` (all when `None`)."""
    bos = tokenizer.bos_token_id if adds_bos(tokenizer) else None
    ids = tokenize(tokenizer, text.text)
    step = seq_len - (1 if bos is not None else 0)
    available = len(ids) // step
    count = available if max_windows is None else min(max_windows, available)
    return token_windows(ids, seq_len, bos_token_id=bos, num_windows=max(count, 1))


def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: Text | str | None = None,
    *,
    seq_len: int = 1024,
    max_windows: int | None = None,
    batch_size: int = 1,
    progress: bool = True,
) -> dict:
    """Perplexity of `model` on a text, with the protocol in this module's docstring.

    Args:
        text: a `Text`, a source name (`builtin-eval`, a `.txt`/`.jsonl` path, `wikitext2`), or `None` for the
            built-in evaluation text.
        seq_len: window length in tokens.
        max_windows: evaluate only the first windows (all when `None`).

    Returns a dict with `perplexity`, `nll` (mean per predicted token), `tokens` (predictions), `seq_len`,
    `windows`, `bos`, `text` and `tokens_sha256` (of the windows).

    Example:

    ```python
    >>> import hf_prune
    >>> from hf_prune.evaluation import perplexity
    >>> loaded = hf_prune.load_model("smollm2-135m")
    >>> result = perplexity(loaded.model, loaded.tokenizer, "builtin-eval", seq_len=128, max_windows=4, progress=False)
    >>> result["windows"], result["tokens"], 5 < result["perplexity"] < 100
    (4, 508, True)

    ```
    """
    if not isinstance(text, Text):
        text = load_text(text, "evaluation")
    windows = evaluation_windows(tokenizer, text, seq_len, max_windows)
    value = windows_perplexity(
        model, windows, batch_size=batch_size, progress=progress, description=f"perplexity {text.source}"
    )
    predictions = windows.shape[0] * (seq_len - 1)
    return {
        "perplexity": value,
        "nll": math.log(value),
        "tokens": predictions,
        "seq_len": seq_len,
        "windows": windows.shape[0],
        "bos": adds_bos(tokenizer),
        "text": text.source,
        "tokens_sha256": tokens_sha256(windows),
    }
