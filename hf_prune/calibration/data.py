"""Calibration and evaluation text: where it comes from, and how it becomes fixed windows of tokens.

Sources:

- `builtin` (the default): the Python Language Reference that ships inside every CPython installation as
  `pydoc_data.topics` (about 465 KB of English prose and examples). It works on a fresh machine with no network.
  Its topics, in name order, are split once, 80% of the text for calibration and the remaining topics for
  `builtin-eval`, so a model is never evaluated on its own calibration text.
- a local `.txt` file (used as it is) or `.jsonl` file (the `"text"` field of every line, joined by blank lines).
- `wikitext2`, `c4`, `pg19`: Hub datasets through the `datasets` package, when the Hub is reachable.

The text is tokenized once, without special tokens, and cut into consecutive non-overlapping windows. Tokenizers that
add BOS by default (Llama 2, TinyLlama) get BOS at the start of every window, followed by `seq_len - 1` text tokens;
the others (SmolLM2, Qwen) get `seq_len` text tokens. Without a seed the first N windows are used, so calibration on
a local file is fully deterministic; with a seed, N windows are drawn at random (without replacement).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from ..errors import CalibrationError, MissingDependencyError

Split = Literal["calibration", "evaluation"]

BUILTIN = "builtin"
BUILTIN_EVAL = "builtin-eval"
_BUILTIN_SPLIT = 0.8


@dataclass(frozen=True)
class HubDataset:
    """A Hub dataset known by a short name: where to read it and which split serves which purpose."""

    path: str
    name: str | None
    calibration_split: str
    evaluation_split: str
    streaming: bool = False
    field: str = "text"


HUB_DATASETS = {
    "wikitext2": HubDataset("Salesforce/wikitext", "wikitext-2-raw-v1", "train", "test"),
    "c4": HubDataset("allenai/c4", "en", "train", "validation", streaming=True),
    "pg19": HubDataset("deepmind/pg19", None, "validation", "test", streaming=True),
}


@dataclass(frozen=True)
class Text:
    """A named text: what the user asked for (`source`) and the text itself."""

    source: str
    text: str


def builtin_text(split: Split = "calibration") -> str:
    """The built-in English text (the Python Language Reference from `pydoc_data.topics`), one of its two splits.

    Example:

    ```python
    >>> from hf_prune.calibration import builtin_text
    >>> builtin_text("calibration")[:22]
    'The "assert" statement'

    ```
    """
    if importlib.util.find_spec("pydoc_data") is None:
        raise CalibrationError("this Python has no pydoc_data module for the built-in text; pass a .txt or .jsonl file")
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    total, seen, cut = sum(map(len, texts)), 0, len(texts)
    for index, text in enumerate(texts):
        if seen >= total * _BUILTIN_SPLIT:
            cut = index
            break
        seen += len(text)
    return "\n\n".join(texts[:cut] if split == "calibration" else texts[cut:])


def load_text(source: str | Path | None = None, split: Split = "calibration", *, max_chars: int | None = None) -> Text:
    """Resolve a calibration or evaluation source to its text.

    Args:
        source: `None`/`"builtin"`, `"builtin-eval"`, a `.txt`/`.jsonl` path, or a Hub dataset short name.
        split: which part of a built-in or Hub source to use (`builtin` with `split="evaluation"` means
            `builtin-eval`).
        max_chars: for streamed Hub datasets, stop reading once this much text is gathered.

    Example:

    ```python
    >>> from hf_prune.calibration import load_text
    >>> load_text("builtin-eval").source
    'builtin-eval'

    ```
    """
    name = str(source) if source is not None else (BUILTIN if split == "calibration" else BUILTIN_EVAL)
    if name in (BUILTIN, BUILTIN_EVAL):
        if name == BUILTIN and split == "evaluation":
            name = BUILTIN_EVAL
        return Text(name, builtin_text("calibration" if name == BUILTIN else "evaluation"))
    if name in HUB_DATASETS:
        return Text(name, _hub_text(name, split, max_chars))
    path = Path(name)
    if not path.is_file():
        known = ", ".join([BUILTIN, BUILTIN_EVAL, *HUB_DATASETS])
        raise CalibrationError(f"text source {name!r} is not a file nor one of: {known}")
    if path.suffix == ".jsonl":
        return Text(name, _jsonl_text(path))
    if path.suffix not in (".txt", ".text", ".md", ""):
        raise CalibrationError(f"{path}: unsupported text file type {path.suffix!r}; use .txt or .jsonl")
    return Text(name, path.read_text(encoding="utf-8"))


def _jsonl_text(path: Path) -> str:
    texts = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CalibrationError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CalibrationError(f"{path}:{number}: every line needs a string field \"text\"")
            texts.append(record["text"])
    return "\n\n".join(texts)


def _hub_text(name: str, split: Split, max_chars: int | None) -> str:
    if importlib.util.find_spec("datasets") is None:
        raise MissingDependencyError(f"the {name} dataset needs the datasets package: pip install 'hf-prune[datasets]'")
    import datasets

    spec = HUB_DATASETS[name]
    split_name = spec.calibration_split if split == "calibration" else spec.evaluation_split
    try:
        dataset = datasets.load_dataset(spec.path, spec.name, split=split_name, streaming=spec.streaming)
        if not spec.streaming:
            return "\n\n".join(dataset[spec.field])
        texts, size = [], 0
        for row in dataset:
            texts.append(row[spec.field])
            size += len(texts[-1])
            if size >= (max_chars or 2_000_000):
                break
        return "\n\n".join(texts)
    except Exception as error:  # datasets raises many kinds; the user needs one line and an alternative
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CalibrationError(
            f"cannot read {name} from the Hub ({first_line}); use a local .txt/.jsonl file or the built-in default"
        ) from error


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer starts every encoding with BOS (and windows should too)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a whole text, without special tokens, tokenized in one pass."""
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def token_windows(
    token_ids: list[int],
    seq_len: int,
    *,
    bos_token_id: int | None = None,
    num_windows: int | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Cut a token stream into non-overlapping windows of `seq_len` tokens (BOS first when `bos_token_id` is set).

    Returns a `(num_windows, seq_len)` tensor: all windows when `num_windows` is `None`, otherwise the first
    `num_windows`, or `num_windows` drawn at random without replacement when `seed` is given.

    Example:

    ```python
    >>> from hf_prune.calibration import token_windows
    >>> token_windows(list(range(10)), 4, bos_token_id=1).tolist()
    [[1, 0, 1, 2], [1, 3, 4, 5], [1, 6, 7, 8]]

    ```
    """
    if seq_len < 2:
        raise CalibrationError(f"sequence length must be at least 2 tokens, got {seq_len}")
    step = seq_len - (1 if bos_token_id is not None else 0)
    available = len(token_ids) // step
    if available == 0:
        raise CalibrationError(f"the text has {len(token_ids):,} tokens, fewer than one window of {seq_len}")
    wanted = available if num_windows is None else num_windows
    if wanted < 1:
        raise CalibrationError(f"number of windows must be at least 1, got {wanted}")
    if wanted > available:
        raise CalibrationError(
            f"the text has {len(token_ids):,} tokens: {available} windows of {seq_len}, fewer than the {wanted} asked "
            "for (use fewer samples, shorter windows, or a longer text)"
        )
    if seed is None:
        starts = range(wanted)
    else:
        generator = torch.Generator().manual_seed(seed)
        starts = sorted(torch.randperm(available, generator=generator)[:wanted].tolist())
    ids = torch.tensor(token_ids[: available * step], dtype=torch.long).view(available, step)[list(starts)]
    if bos_token_id is not None:
        ids = torch.cat([torch.full((len(ids), 1), bos_token_id, dtype=torch.long), ids], dim=1)
    return ids


def tokens_sha256(input_ids: torch.Tensor) -> str:
    """SHA-256 of exactly these token windows (int64, little-endian, row-major), for reproducibility records."""
    return hashlib.sha256(input_ids.to(torch.int64).contiguous().numpy().astype("<i8").tobytes()).hexdigest()


@dataclass
class CalibrationData:
    """Fixed calibration windows and their provenance.

    Attributes:
        input_ids: `(num_samples, seq_len)` token windows.
        source: where the text came from (`builtin`, a path, a Hub dataset name).
        seed: the seed that drew the windows, or `None` for the first windows in order.
        bos: whether each window starts with BOS.
        attention_mask: `(num_samples, seq_len)`, 0 at padding, when windows are padded; padding positions are
            excluded from every statistic.
    """

    input_ids: torch.Tensor
    source: str
    seed: int | None = None
    bos: bool = False
    attention_mask: torch.Tensor | None = None

    @property
    def num_samples(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]

    @property
    def num_tokens(self) -> int:
        """Tokens the statistics see (padding excluded)."""
        return self.input_ids.numel() if self.attention_mask is None else int(self.attention_mask.sum())

    @property
    def tokens_sha256(self) -> str:
        return tokens_sha256(self.input_ids)

    def provenance(self) -> dict:
        """The `calibration` entry of `pruning.json`."""
        return {
            "source": self.source,
            "num_samples": self.num_samples,
            "seq_len": self.seq_len,
            "tokens_sha256": self.tokens_sha256,
            "seed": self.seed,
            "bos": self.bos,
        }

    def batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """`(input_ids, attention_mask)` in batches of `batch_size` (the last may be smaller; mask may be None)."""
        if batch_size < 1:
            raise CalibrationError(f"batch size must be at least 1, got {batch_size}")
        ids = self.input_ids.split(batch_size)
        if self.attention_mask is None:
            return [(batch, None) for batch in ids]
        return list(zip(ids, self.attention_mask.split(batch_size)))


def load_calibration(
    tokenizer: PreTrainedTokenizerBase,
    source: Text | str | Path | None = None,
    *,
    num_samples: int | None = 64,
    seq_len: int = 256,
    seed: int | None = None,
) -> CalibrationData:
    """Calibration windows from a source, ready for scoring (`num_samples=None`: every window of the whole text).

    Example:

    ```python
    >>> from hf_prune.calibration import load_calibration
    >>> from hf_prune.checkpoint import load_tokenizer
    >>> tokenizer = load_tokenizer("smollm2-135m")
    >>> data = load_calibration(tokenizer, num_samples=8, seq_len=128)
    >>> data.input_ids.shape, data.source
    (torch.Size([8, 128]), 'builtin')

    ```
    """
    max_chars = num_samples * seq_len * 8 if num_samples is not None else None
    text = source if isinstance(source, Text) else load_text(source, "calibration", max_chars=max_chars)
    if not text.text.strip():
        raise CalibrationError(f"calibration text {text.source} is empty")
    bos = adds_bos(tokenizer)
    windows = token_windows(
        tokenize(tokenizer, text.text),
        seq_len,
        bos_token_id=tokenizer.bos_token_id if bos else None,
        num_windows=num_samples,
        seed=seed,
    )
    return CalibrationData(input_ids=windows, source=text.source, seed=seed, bos=bos)
