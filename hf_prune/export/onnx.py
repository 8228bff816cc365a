"""ONNX export of a pruned model with its KV cache, through transformers' own exporter (the `hf-prune[onnx]` extra).

optimum-onnx pins transformers < 4.58, so hf-prune uses `transformers.exporters.exporter_onnx.OnnxExporter`
(tested with transformers 5.23), which traces with `torch.export` and converts with `torch.onnx`. A causal LM becomes two
graphs that share nothing but the cache tensors: `prefill` (the prompt, an empty cache) and `decode` (new tokens and
the cache so far). Per-layer widths are baked into the graphs, so heterogeneous checkpoints in the pruned format
export like stock ones. `OnnxGenerator` runs both on ONNX Runtime for greedy generation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from packaging import version
from transformers import DynamicCache, PreTrainedModel

from ..architecture.modeling_pruned import CACHE_NAME
from ..checkpoint.save import atomic_directory, check_output_dir
from ..errors import FormatError, MissingDependencyError
from ..provenance import RECORD_NAME

INSTALL_HINT = "pip install 'hf-prune[onnx]'"
# transformers' exporters exist earlier, but export_for_generation returns what this module reads from 5.23 on.
MINIMUM_TRANSFORMERS = version.Version("5.23")
REQUIRED = ("onnx", "onnxruntime", "onnxscript")
SAMPLE_PROMPT_LENGTH = 8  # tokens of the sample prompt traced through generate (any ids: only shapes matter)


def require_onnx() -> None:
    """Raise a one-line `MissingDependencyError` unless onnx, onnxscript and onnxruntime are installed."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(f"ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")
    if not exporter_available():
        raise MissingDependencyError(
            f"ONNX export needs transformers>=5.23 for its exporters (installed: {transformers.__version__}): "
            "pip install 'transformers>=5.23'"
        )


def exporter_available() -> bool:
    """Whether the installed transformers has the exporter this module drives (5.23 and newer)."""
    installed = version.Version(transformers.__version__)
    return installed >= MINIMUM_TRANSFORMERS and importlib.util.find_spec("transformers.exporters") is not None


def export_onnx(
    model: PreTrainedModel,
    output_dir: str | Path,
    *,
    tokenizer=None,
    record_from: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Export `model` to `output_dir` as ONNX `prefill` and `decode` graphs with a KV cache, atomically.

    The directory gets `prefill.onnx`, `decode.onnx` (weights in `.onnx.data` beside them), `export.json` (what was
    traced), the model's config and, when given, its tokenizer and the `pruning.json` of `record_from`. Load it
    with `load_onnx`. Quantized (optimum-quanto) models are not exported: export the float model.

    Example:

    ```python
    >>> import tempfile
    >>> import torch
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4, num_key_value_heads=2)).eval()
    >>> pruned = hf_prune.remove_heads(hf_prune.remove_layers(model, [1]), {0: [0, 2]})  # one head of each KV group
    >>> from hf_prune.export import export_onnx, load_onnx
    >>> directory = export_onnx(pruned, tempfile.mkdtemp() + "/onnx")
    >>> sorted(path.name for path in directory.glob("*.onnx"))
    ['decode.onnx', 'prefill.onnx']
    >>> prompt = torch.tensor([[1, 5, 9, 3]])
    >>> torch.equal(torch.as_tensor(load_onnx(directory).generate(prompt, max_new_tokens=6)),
    ...             pruned.generate(prompt, max_new_tokens=6, do_sample=False))
    True

    ```
    """
    require_onnx()
    from transformers.exporters.exporter_onnx import OnnxConfig, OnnxExporter

    from ..quantization.quanto import is_quantized

    if is_quantized(model):
        raise FormatError("cannot export a quantized model to ONNX; export the pruned float model")
    check_output_dir(output_dir, overwrite)
    model = model.eval()
    # A batch of 2 keeps the batch axis dynamic; generate() records what prefill and decode receive.
    sample = torch.randint(1, model.config.vocab_size, (2, SAMPLE_PROMPT_LENGTH), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": sample.to(model.device), "attention_mask": torch.ones_like(sample).to(model.device)}
    # torch.onnx reports its progress on stdout; keep stdout for the command's own output (e.g. --json).
    with contextlib.redirect_stdout(sys.stderr):
        exported = OnnxExporter().export_for_generation(
            model, inputs, OnnxConfig(dynamic=True), multi_token_decode=True
        )
    with atomic_directory(output_dir, overwrite) as staging:
        exported.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if record_from is not None and (Path(record_from) / RECORD_NAME).is_file():
            shutil.copyfile(Path(record_from) / RECORD_NAME, staging / RECORD_NAME)
    return Path(output_dir)


@dataclass
class OnnxGenerator:
    """A model exported by `export_onnx`, run with ONNX Runtime.

    Example:

    ```python
    >>> import tempfile
    >>> import torch
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4, num_key_value_heads=2)).eval()
    >>> pruned = hf_prune.remove_heads(hf_prune.remove_layers(model, [1]), {0: [0, 2]})  # one head of each KV group
    >>> from hf_prune.export import export_onnx, load_onnx
    >>> generator = load_onnx(export_onnx(pruned, tempfile.mkdtemp() + "/onnx"))
    >>> tuple(generator.generate(torch.tensor([[1, 5, 9, 3]]), max_new_tokens=4).shape)
    (1, 8)

    ```
    """

    exported: object  # transformers.exporters.base.ExportedModel

    @property
    def config(self):
        return self.exported.config

    def _run(self, stage: str, input_ids: torch.Tensor, start: int, cache: DynamicCache):
        positions = torch.arange(start, start + input_ids.shape[1]).expand(input_ids.shape[0], -1)
        return self.exported.runners[stage](input_ids=input_ids, position_ids=positions, **{CACHE_NAME: cache})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits for `input_ids` (no padding), from the prefill graph."""
        return self._run("prefill", input_ids, 0, DynamicCache(config=self.config)).logits

    __call__ = forward

    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 20,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
    ) -> torch.Tensor:
        """Greedy decoding with the KV cache, as `model.generate(do_sample=False)`: prefill once, then one token per
        decode step, for prompts without padding. A row that produced an `eos_token_id` is padded with
        `pad_token_id` (default: the first EOS id); generation stops when every row has."""
        stop = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or []))
        pad = pad_token_id if pad_token_id is not None else (int(stop[0]) if len(stop) else 0)
        outputs = self._run("prefill", input_ids, 0, DynamicCache(config=self.config))
        sequence, finished = input_ids, torch.zeros(input_ids.shape[0], dtype=torch.bool)
        for _ in range(max_new_tokens):
            next_token = outputs.logits[:, -1].argmax(-1, keepdim=True)
            if len(stop):
                next_token = torch.where(finished[:, None], pad, next_token)
                finished |= torch.isin(next_token[:, 0], stop)
            sequence = torch.cat([sequence, next_token], dim=1)
            if finished.all():
                break
            outputs = self._run("decode", next_token, sequence.shape[1] - 1, getattr(outputs, CACHE_NAME))
        return sequence


def load_onnx(directory: str | Path) -> OnnxGenerator:
    """Load an export written by `export_onnx` on ONNX Runtime (CPU unless a GPU provider is installed)."""
    require_onnx()
    from transformers.exporters.base import ExportedModel

    return OnnxGenerator(ExportedModel.from_pretrained(str(directory)))
