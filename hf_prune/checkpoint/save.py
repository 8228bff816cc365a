"""Writing a pruned checkpoint: stock or pruned format, safetensors only, all-or-nothing."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..architecture.families import to_pruned, to_stock
from ..architecture.gguf_layout import gguf_layout
from ..errors import FormatError, OutputExistsError
from ..provenance import PROFILE_NAME, PruningRecord, profile_png, render_model_card
from .layer_source import LayerSource, as_layer_source

CheckpointFormat = Literal["auto", "pruned", "stock"]
FORMATS = ("auto", "pruned", "stock")


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work is done, an output directory that exists and is not empty (unless `overwrite`).

    Example:

    ```python
    >>> from hf_prune.checkpoint import check_output_dir
    >>> check_output_dir("/tmp/surely-not-there-yet").name
    'surely-not-there-yet'

    ```
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(f"output directory {path} is not empty; choose another or pass overwrite")
    return path


def new_file_mode(directory: bool = False) -> int:
    """The permissions `open()` or `mkdir()` would give a new file or directory under the current umask.

    Example:

    ```python
    >>> from hf_prune.checkpoint.save import new_file_mode
    >>> new_file_mode() & 0o600 == 0o600
    True

    ```
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_directory(output_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `output_dir` that replaces it only if the block completes.

    On any error the temporary directory is deleted and `output_dir` is left exactly as it was.

    Example:

    ```python
    >>> from hf_prune.checkpoint import atomic_directory
    >>> with atomic_directory("/tmp/hf-prune-example", overwrite=True) as tmp:
    ...     _ = (tmp / "hello.txt").write_text("hi")

    ```
    """
    final = check_output_dir(output_dir, overwrite).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    # mkdtemp makes a private (0700) directory; give the result the permissions any new directory would get.
    os.chmod(staging, new_file_mode(directory=True))
    try:
        yield staging
        # Some writers go through private temporary files (transformers 5.25 leaves model.safetensors at 0600):
        # give every file the permissions a new file gets, so the checkpoint can be shared and served.
        for path in staging.rglob("*"):
            if path.is_file() and not path.is_symlink():
                os.chmod(path, new_file_mode())
        if final.exists():
            # Move the old directory aside first, so the rename below cannot meet a non-empty target.
            retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, retired / final.name)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def resolve_format(model: PreTrainedModel, format: CheckpointFormat = "auto") -> tuple[PreTrainedModel, str, str | None]:
    """Pick the model to write for `format`: `(model, "stock" | "pruned", why not stock)`.

    `auto` writes the source architecture whenever it can express the model, else the pruned format.
    """
    if format not in FORMATS:
        raise FormatError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    pruned = to_pruned(model)
    if format == "pruned":
        return pruned, "pruned", "pruned format requested"
    try:
        return to_stock(pruned), "stock", None
    except FormatError as error:
        if format == "stock":
            raise FormatError(f"cannot save as a stock checkpoint: {error}") from error
        return pruned, "pruned", str(error)


def save_pruned(
    model: PreTrainedModel | LayerSource,
    output_dir: str | Path,
    *,
    format: CheckpointFormat = "auto",
    tokenizer: PreTrainedTokenizerBase | None = None,
    record: PruningRecord | None = None,
    model_card: Callable[[PruningRecord], str] | str | bool = True,
    extra_files: dict[str, Callable[[PruningRecord], str | bytes] | str | bytes] | None = None,
    overwrite: bool = False,
    quantize: str | None = None,
) -> PruningRecord:
    """Save a pruned model with its tokenizer, `pruning.json` and optionally a model card, atomically.

    `model_card` is the `README.md` to write, a function rendering it from the final record (which knows the format
    actually written), `True` (the default) for the standard card and `pruning_profile.png`, or `False` for none.
    `extra_files` maps more file names to their text or bytes, or to such a function.

    Weights are written as safetensors. `format="auto"` writes a stock checkpoint (e.g. a plain `LlamaForCausalLM`
    with fewer layers) when the source architecture can express the model, otherwise the pruned format, whose
    directory also carries `configuration_pruned.py` / `modeling_pruned.py` and an `auto_map` so that it loads with
    `trust_remote_code=True` where hf_prune is not installed. Either way it loads with
    `AutoModelForCausalLM.from_pretrained`. Returns the record written to `pruning.json`.

    `quantize="int8"` or `"int4"` writes the weights quantized with optimum-quanto (the `hf-prune[quant]` extra;
    `model` itself is left as it is), loadable with `hf_prune.load_model` or optimum-quanto's
    `QuantizedModelForCausalLM.from_pretrained`.

    Example:

    ```python
    >>> import tempfile
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> pruned = hf_prune.remove_layers(model, [1])
    >>> record = hf_prune.save_pruned(pruned, tempfile.mkdtemp() + "/two-layers")
    >>> record.format, record.layers_before, record.layers_after
    ('stock', 3, 2)

    ```
    """
    check_output_dir(output_dir, overwrite)
    source = as_layer_source(model)
    model = source.structure  # for a streamed source, the skeleton: the checkpoint's shapes and provenance
    record = record or PruningRecord.from_model(model)
    to_write, written_format, reason = resolve_format(model, format)
    record.format, record.format_reason = written_format, reason
    record.architecture = type(to_write).__name__
    record.serving = serving_facts(to_write.config)
    if quantize is not None:
        if source.streamed:
            raise FormatError("a layer-streamed model cannot be quantized while it is written; quantize the saved checkpoint")
        from ..quantization.quanto import quantization_facts, quantize_weights

        if to_write is model:  # leave the caller's model unquantized
            to_write = copy.deepcopy(model)
        to_write = quantize_weights(to_write, quantize)
        record.quantization = quantization_facts(to_write, quantize)
    with atomic_directory(output_dir, overwrite) as staging:
        if quantize is not None:
            from ..quantization.quanto import save_quantized

            save_quantized(to_write, staging)
        else:
            source.save_weights(to_write, staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        record.save(staging)
        files = dict(extra_files or {})
        if model_card is True:

            files.setdefault(PROFILE_NAME, profile_png)
            files["README.md"] = lambda final: render_model_card(final, model_name=Path(output_dir).name)
        elif model_card:
            files["README.md"] = model_card
        for name, content in files.items():
            content = content(record) if callable(content) else content
            if isinstance(content, bytes):
                (staging / name).write_bytes(content)
            else:
                (staging / name).write_text(content, encoding="utf-8")
    return record


def serving_facts(config) -> dict:
    """Where the saved checkpoint runs besides transformers: the GGUF layout llama.cpp gets, or why there is none.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_prune.checkpoint.save import serving_facts
    >>> serving_facts(LlamaConfig(num_hidden_layers=2))
    {'gguf': {'architecture': 'llama', 'notes': []}}

    ```
    """
    try:
        layout = gguf_layout(config)
    except FormatError as error:
        return {"gguf": {"refused": str(error)}}
    return {"gguf": {"architecture": layout.architecture, "notes": layout.notes}}
