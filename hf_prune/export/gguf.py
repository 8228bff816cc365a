"""GGUF export for llama.cpp, through the `gguf` package's writer (the `hf-prune[gguf]` extra).

The layout, llama.cpp architecture by family and the exact workarounds for what llama.cpp's `deci` graph does
differently, is decided from the config alone by `hf_prune.architecture.gguf_layout`; this module writes the file:
weights (query and key rows reordered for llama.cpp's RoPE where needed), tokenizer and chat template.

What GGUF cannot express is refused with a one-line `FormatError` before anything is written: narrowed heads
(`rotary_pairs`), per-layer softmax scales, q/k norms (Qwen3) under `deci`, RoPE scalings other than default,
linear and llama3, activations other than SiLU (GELU for Gemma 3), and a Gemma 3 whose layers no longer have the one
shape and fixed local/global pattern of llama.cpp's `gemma3`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..architecture.gguf_layout import GGUFLayout, gguf_layout
from ..checkpoint.save import new_file_mode
from ..errors import FormatError, LlamaCppError, MissingDependencyError, OutputExistsError

INSTALL_HINT = "pip install 'hf-prune[gguf]'"
RUNTIME_INSTALL_HINT = "pip install llama-cpp-python"
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp rotates pairs of adjacent dimensions ("normal" RoPE, for which the query and key rows are permuted from
# transformers' half-split layout) except in these architectures, which rotate halves (NEOX) as transformers does.
NEOX_ROPE_ARCHITECTURES = ("qwen2", "qwen3", "gemma3")
# llama.cpp pre-tokenizer names for the byte-level BPE pre-tokenizers hf-prune recognises in a tokenizer.json.
KNOWN_PRE_TOKENIZERS = {
    (("ByteLevel", True),): "gpt-2",
    (("Digits", True), ("ByteLevel", True)): "smollm",
}


@dataclass
class GGUFExport:
    """What `export_gguf` wrote.

    Attributes:
        path: the GGUF file.
        architecture: the llama.cpp architecture it declares (`llama`, `qwen2`, `qwen3`, `gemma3` or `deci`).
        outtype: the weight type of its matrices (`f32`, `f16`, `bf16` or `q8_0`).
        tokenizer_model: llama.cpp's tokenizer model (`gpt2` for byte-level BPE, `llama` for SentencePiece-style BPE).
        notes: what the file does differently from the checkpoint, one sentence each (empty when it is exact).
    """

    path: Path
    architecture: str
    outtype: str
    tokenizer_model: str
    notes: list[str] = field(default_factory=list)


def require_gguf() -> None:
    """Raise a one-line `MissingDependencyError` unless the `gguf` package is installed."""
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(f"GGUF export needs the gguf package: {INSTALL_HINT}")


def export_gguf(
    model: PreTrainedModel,
    path: str | Path,
    *,
    tokenizer: PreTrainedTokenizerBase,
    outtype: str = "f16",
    pre_tokenizer: str | None = None,
    overwrite: bool = False,
) -> GGUFExport:
    """Write `model` and `tokenizer` to one GGUF file that llama.cpp runs.

    The file is written beside `path` under a temporary name and renamed when complete, so an error or Ctrl-C leaves
    nothing behind.

    Args:
        model: a stock model of a supported family or a `PrunedForCausalLM`.
        path: the `.gguf` file to write.
        tokenizer: the model's tokenizer (a fast tokenizer), embedded with its special tokens and chat template.
        outtype: `f32`, `f16`, `bf16` or `q8_0` for the matrices; norms and biases stay float32, and a matrix whose
            rows do not split into q8_0 blocks of 32 is written as f16.
        pre_tokenizer: llama.cpp's pre-tokenizer name, for a byte-level tokenizer hf-prune does not recognise.
        overwrite: replace an existing file.

    Example:

    ```python
    >>> import tempfile, torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from hf_prune.export.gguf import export_gguf
    >>> vocab = {chr(ord("a") + i): i for i in range(26)}
    >>> backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    >>> backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=26, hidden_size=64, intermediate_size=64,
    ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    >>> written = export_gguf(model, tempfile.mkdtemp() + "/tiny.gguf", tokenizer=tokenizer, outtype="f32")
    >>> written.architecture, written.tokenizer_model
    ('llama', 'gpt2')

    ```
    """
    require_gguf()
    import gguf

    if outtype not in OUTTYPES:
        raise FormatError(f"unknown GGUF outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    from ..quantization.quanto import is_quantized

    if is_quantized(model):
        raise FormatError("cannot export an optimum-quanto model to GGUF; export the float model (--outtype q8_0 quantizes)")
    config = model.config
    layout = gguf_layout(config)
    vocabulary = _vocabulary(tokenizer, config.vocab_size, pre_tokenizer)

    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_file(path) as temporary:
        writer = gguf.GGUFWriter(temporary, layout.architecture)
        _write_metadata(writer, config, layout, outtype)
        vocabulary.write(writer, tokenizer)
        _write_tensors(writer, model, layout, outtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return GGUFExport(path, layout.architecture, outtype, vocabulary.model, layout.notes)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(new_file_mode())  # mkstemp's 0600 would hide the file from other users, unlike any other writer
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_metadata(writer, config, layout: GGUFLayout, outtype: str) -> None:
    import gguf

    head_dim, layers = layout.head_dim, layout.layers
    writer.add_name(getattr(config, "_name_or_path", "") or "hf-prune export")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    if layout.architecture == "deci":
        writer.add_head_count([layer.heads for layer in layers])
        writer.add_head_count_kv([layer.kv_heads for layer in layers])
        writer.add_feed_forward_length([layer.intermediate_size for layer in layers])
        scale = next((layer.softmax_scale for layer in config.per_layer_config if layer.softmax_scale is not None), None)
        if scale is not None:
            writer.add_attention_scale(scale)
    else:  # one width for all layers
        writer.add_head_count(layers[0].heads)
        writer.add_head_count_kv(layers[0].kv_heads)
        writer.add_feed_forward_length(layers[0].intermediate_size)
    if layout.sliding_window is not None:
        writer.add_sliding_window(layout.sliding_window)
    rope = dict(layout.rope_parameters or getattr(config, "rope_parameters", None) or {})
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_types[outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_tensors(writer, model: PreTrainedModel, layout: GGUFLayout, outtype: str) -> None:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(_model_arch(layout.architecture), config.num_hidden_layers)
    head_dim = layout.head_dim
    permute = layout.architecture not in NEOX_ROPE_ARCHITECTURES
    state = model.state_dict()
    for name, tensor in state.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp uses the token embedding when there is no output matrix
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise FormatError(f"GGUF export does not know where to put tensor {name!r}")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if layout.norm_unit_offset and name.endswith("norm.weight"):
            data = data + np.float32(1)  # llama.cpp scales by the stored weight; the checkpoint by 1 + weight
        if permute and (".q_proj." in name or ".k_proj." in name):
            data = _interleave_rotary_halves(data, head_dim)
        _add(writer, gguf_name, data, outtype)
    for index, layer in enumerate(layout.layers):
        if layer.zero_attention:
            # One zero head: its output projection is zero, so the layer's output is exactly its input.
            hidden = config.hidden_size
            _add(writer, f"blk.{index}.attn_norm.weight", np.ones(hidden, np.float32), outtype)
            for part, shape in (("q", (head_dim, hidden)), ("k", (head_dim, hidden)), ("v", (head_dim, hidden))):
                _add(writer, f"blk.{index}.attn_{part}.weight", np.zeros(shape, np.float32), outtype)
            _add(writer, f"blk.{index}.attn_output.weight", np.zeros((hidden, head_dim), np.float32), outtype)
        if layer.zero_mlp:
            hidden, width = config.hidden_size, layer.intermediate_size
            _add(writer, f"blk.{index}.ffn_norm.weight", np.ones(hidden, np.float32), outtype)
            _add(writer, f"blk.{index}.ffn_gate.weight", np.zeros((width, hidden), np.float32), outtype)
            _add(writer, f"blk.{index}.ffn_up.weight", np.zeros((width, hidden), np.float32), outtype)
            _add(writer, f"blk.{index}.ffn_down.weight", np.zeros((hidden, width), np.float32), outtype)
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", _llama3_frequency_factors(config, head_dim))


def _model_arch(architecture: str):
    import gguf

    return next(arch for arch, name in gguf.MODEL_ARCH_NAMES.items() if name == architecture)


def _interleave_rotary_halves(data: np.ndarray, head_dim: int) -> np.ndarray:
    """Reorder each head's rows from transformers' (first halves, second halves) to llama.cpp's adjacent pairs."""
    heads = data.shape[0] // head_dim
    shape = data.shape
    return data.reshape(heads, 2, head_dim // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _add(writer, name: str, data: np.ndarray, outtype: str) -> None:
    import gguf

    if data.ndim == 1 or outtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))
    elif outtype == "f16" or (outtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]):
        writer.add_tensor(name, data.astype(np.float16))
    else:
        qtype = gguf.GGMLQuantizationType.BF16 if outtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def _llama3_frequency_factors(config, head_dim: int) -> np.ndarray:
    """Llama 3's RoPE scaling as llama.cpp takes it: one divisor per rotary pair of the base frequencies."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = config.rope_parameters
    base = 1.0 / (rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    return (base / scaled.to(torch.float64)).to(torch.float32).numpy()


@dataclass
class _Vocabulary:
    model: str
    pre: str | None
    tokens: list[str]
    scores: list[float]
    types: list[int]
    add_space_prefix: bool | None = None  # SentencePiece-style: whether the normalizer prepends "▁" to the text

    def write(self, writer, tokenizer: PreTrainedTokenizerBase) -> None:
        import gguf

        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        writer.add_token_list(self.tokens)
        writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        # gguf's SpecialVocab reads merges, special token ids, add_bos/add_eos and the chat template from the files
        # save_pretrained writes, exactly as llama.cpp's own converter does.
        with tempfile.TemporaryDirectory() as directory:
            tokenizer.save_pretrained(directory)
            special = gguf.SpecialVocab(directory, load_merges=self.model == "gpt2", n_vocab=len(self.tokens))
            special.add_to_gguf(writer, quiet=True)
        if special.chat_template is None and getattr(tokenizer, "chat_template", None):
            writer.add_chat_template(tokenizer.chat_template)


def _vocabulary(tokenizer: PreTrainedTokenizerBase, vocab_size: int, pre_tokenizer: str | None) -> _Vocabulary:
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise FormatError("GGUF export needs a fast tokenizer (tokenizer.json)")
    description = json.loads(backend.to_str())
    model = description["model"]
    steps = _steps(description.get("pre_tokenizer"), "pretokenizers")
    byte_level = any(step.get("type") == "ByteLevel" for step in steps)
    if model.get("type") != "BPE":
        raise FormatError(f"GGUF export supports BPE tokenizers, not {model.get('type')!r}")
    if byte_level:
        kind = "gpt2"
        signature = tuple(
            (step.get("type"), step.get("use_regex", step.get("individual_digits"))) for step in steps if step
        )
        pre = pre_tokenizer or KNOWN_PRE_TOKENIZERS.get(signature)
        if pre is None:
            raise FormatError(
                f"cannot tell llama.cpp's pre-tokenizer for this tokenizer ({[step.get('type') for step in steps]}); "
                "name it with --pre-tokenizer (e.g. llama-bpe, qwen2)"
            )
    elif model.get("byte_fallback"):
        kind, pre = "llama", None  # SentencePiece-style BPE: llama.cpp splits on its own and merges by score
    else:
        raise FormatError("GGUF export supports byte-level BPE and byte-fallback (SentencePiece-style) BPE tokenizers")

    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise FormatError(f"the tokenizer has ids up to {max(vocab.values())} but the model's vocabulary is {vocab_size}")
    tokens = [f"[PAD{index}]" for index in range(vocab_size)]
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    scores = [0.0] * vocab_size
    special_ids = set(tokenizer.all_special_ids)
    added = {token.content: (index, token.special) for index, token in tokenizer.added_tokens_decoder.items()}
    for token, index in vocab.items():
        tokens[index] = token
        if index in special_ids or added.get(token, (None, False))[1]:
            types[index] = int(gguf.TokenType.CONTROL)
        elif token in added:
            types[index] = int(gguf.TokenType.USER_DEFINED)
        elif kind == "llama" and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            types[index] = int(gguf.TokenType.BYTE)
        else:
            types[index] = int(gguf.TokenType.NORMAL)
            # llama.cpp's SentencePiece tokenizer merges the highest score first; BPE ids follow merge order.
            scores[index] = -float(index) if kind == "llama" else 0.0
    # llama.cpp's SentencePiece tokenizer prepends a space unless told not to (Gemma's tokenizer does not): a
    # tokenizer.json puts "▁" before the text with a `Prepend` normalizer or a prepending `Metaspace`.
    add_space_prefix = None
    if kind == "llama":
        add_space_prefix = any(step.get("type") == "Prepend" for step in _steps(description.get("normalizer"), "normalizers"))
        add_space_prefix |= any(
            step.get("type") == "Metaspace" and step.get("prepend_scheme") in ("first", "always") for step in steps
        )
    return _Vocabulary(kind, pre, tokens, scores, types, add_space_prefix)


def _steps(component: dict | None, key: str) -> list[dict]:
    """The steps of a tokenizer.json normalizer or pre-tokenizer: a `Sequence`'s members, else the one step."""
    component = component or {}
    return component.get(key, [component]) if component.get("type") == "Sequence" else [component]


def llama_cpp_greedy(path: str | Path, input_ids: list[int], max_new_tokens: int) -> tuple[list[int], np.ndarray]:
    """Run a GGUF file in llama.cpp (llama-cpp-python): greedy tokens after `input_ids`, and the prompt's logits.

    Decoding goes through llama.cpp's KV cache one token at a time, as a server would. llama.cpp runs in a child
    process: a crash inside it (its AMX kernels segfault on some Intel Xeons with q8_0 files, llama.cpp issue 20824)
    raises a one-line `LlamaCppError` instead of ending the caller.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingDependencyError(f"running a GGUF file needs llama.cpp's Python binding: {RUNTIME_INSTALL_HINT}")
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "greedy.npz"
        request = {"model": str(path), "input_ids": [int(i) for i in input_ids], "max_new_tokens": max_new_tokens,
                   "output": str(output)}
        worker = Path(__file__).with_name("llama_cpp_worker.py")
        completed = subprocess.run([sys.executable, str(worker), json.dumps(request)], capture_output=True, text=True)
        if completed.returncode != 0:
            code = completed.returncode
            how = f"signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exit status {code}"
            last_line = (completed.stderr.strip().splitlines() or [""])[-1]
            detail = f": {last_line}" if code > 0 and last_line else ""
            raise LlamaCppError(f"llama.cpp failed running {path} ({how}){detail}")
        with np.load(output) as result:
            return result["tokens"].tolist(), result["logits"]


__all__ = ["OUTTYPES", "GGUFExport", "export_gguf", "llama_cpp_greedy", "require_gguf"]
