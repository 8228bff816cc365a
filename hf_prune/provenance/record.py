"""`pruning.json`: the provenance written next to every pruned checkpoint, and read back by the card and the pusher."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from .._version import __version__
from ..architecture.families import pruned_config_from
from ..surgery.trace import trace_of
from .size import count_parameters, kv_cache_bytes_per_token

RECORD_NAME = "pruning.json"


@dataclass
class PruningRecord:
    """Everything needed to understand and reproduce a pruned checkpoint.

    Attributes:
        method: the scoring method (`block-influence`, `transact`, `llm-rank`, a baseline, or `manual`).
        source_model: what was pruned (a Hub id where known).
        format: `stock` or `pruned`, as written.
        params_before / params_after: distinct parameters of the source and of the result.
        layers_before / layers_after: decoder layers of the source and of the result.
        removed_layers: source indices of the removed layers.
        per_layer: for each kept layer, its `source_layer`, widths (and its source layer's, `source_*`), the source
            indices it kept, and the fractions of its source attention width (heads x head_dim) and MLP width it kept.
        kv_cache_bytes_per_token_before / _after: at the checkpoint's dtype.
        dtype: the dtype of the weights.
        width_kept: in the layers that remain, the fraction of the source's attention width (heads x head_dim) and
            MLP width (intermediate neurons) kept.
        calibration: `source`, `num_samples`, `seq_len`, `tokens_sha256` (and `seed`), or `None` for manual pruning.
        scores: the scores that decided what to remove, as the method produced them.
        citation: the paper of the method, as the card cites it (`None` for baselines and manual pruning).
        settings: the method's configuration, as `MethodConfig.to_dict()` wrote it (rebuild it with
            `hf_prune.scoring.method_config_from_dict`).
        target: how much the method was asked to remove (`{"num_layers": n}` or `{"ratio": r}`), or `None` where
            the configuration gave explicit widths.
        evaluation: optional measurements (perplexity before/after, speed).
        format_reason: why the pruned format was written (what the stock architecture cannot express).
        architecture: the class written in `config.json` (e.g. `LlamaForCausalLM`).
        license: the source model's licence, where known (the card inherits it).
        quantization: how the weights were quantized after pruning (`backend`, `weights` "int8"/"int4",
            `excluded` modules), or `None`.
        command: the command line that produced the checkpoint.
        healing: how the pruned model was healed by distillation (`hf-prune heal`): teacher, data and the SHA-256 of
            its token windows, tokens, steps, optimiser, LoRA rank, loss curve, held-out perplexity before and after,
            wall time; `None` if it was not.
        serving: where the checkpoint runs besides transformers: `{"gguf": {"architecture", "notes"}}` for the layout
            `hf-prune export --format gguf` writes for llama.cpp, or `{"gguf": {"refused": reason}}`.

    Example:

    ```python
    >>> import tempfile
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.provenance import PruningRecord
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> directory = tempfile.mkdtemp() + "/two-layers"
    >>> _ = hf_prune.save_pruned(hf_prune.remove_layers(model, [1]), directory)
    >>> record = PruningRecord.load(directory)
    >>> record.removed_layers, record.layers_after, record.format
    ([1], 2, 'stock')

    ```
    """

    method: str
    source_model: str
    format: str
    params_before: int
    params_after: int
    layers_before: int
    layers_after: int
    removed_layers: list[int]
    per_layer: list[dict[str, Any]]
    kv_cache_bytes_per_token_before: int
    kv_cache_bytes_per_token_after: int
    dtype: str
    width_kept: dict[str, float] = field(default_factory=lambda: {"attention": 1.0, "mlp": 1.0})
    calibration: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    citation: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    format_reason: str | None = None
    architecture: str | None = None
    license: str | None = None
    command: str | None = None
    quantization: dict[str, Any] | None = None
    healing: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None
    hf_prune_version: str = ""
    created: str = ""

    @classmethod
    def from_model(
        cls,
        model: PreTrainedModel,
        *,
        method: str = "manual",
        source_model: str | None = None,
        calibration: dict[str, Any] | None = None,
        scores: dict[str, Any] | None = None,
        citation: str | None = None,
        settings: dict[str, Any] | None = None,
        target: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        license: str | None = None,
        command: str | None = None,
    ) -> PruningRecord:
        """Describe a model that surgery produced (its `pruning_trace` says what it kept of its source)."""
        config = pruned_config_from(model.config)
        trace = trace_of(model)
        source_config = trace.source_config or config
        dtype = model.dtype  # a layer-streamed model's meta tensors have the dtype its layers are streamed in
        per_layer = []
        attention_widths, mlp_widths = [0, 0], [0, 0]
        for index, (layer, kept) in enumerate(zip(config.per_layer_config, trace.layers)):
            source = source_config.per_layer_config[kept.source_layer]
            kept_attention, source_attention = len(kept.query_heads) * layer.head_dim, source.num_attention_heads * source.head_dim
            attention_widths[0] += kept_attention
            attention_widths[1] += source_attention
            mlp_widths[0] += len(kept.neurons)
            mlp_widths[1] += source.intermediate_size
            skip = set(getattr(layer, "skip", None) or ())
            source_skip = set(getattr(source, "skip", None) or ())
            per_layer.append(
                {
                    "layer": index,
                    "source_layer": kept.source_layer,
                    "num_attention_heads": 0 if "self_attn" in skip else layer.num_attention_heads,
                    "num_key_value_heads": 0 if "self_attn" in skip else layer.num_key_value_heads,
                    "head_dim": layer.head_dim,
                    "intermediate_size": 0 if "mlp" in skip else layer.intermediate_size,
                    "kept_query_heads": kept.query_heads,
                    "kept_kv_heads": kept.kv_heads,
                    "kept_neurons": kept.neurons,
                    "rotary_pairs": kept.rotary_pairs,
                    "source_num_attention_heads": 0 if "self_attn" in source_skip else source.num_attention_heads,
                    "source_num_key_value_heads": 0 if "self_attn" in source_skip else source.num_key_value_heads,
                    "source_intermediate_size": 0 if "mlp" in source_skip else source.intermediate_size,
                    "attention_width_kept": kept_attention / max(source_attention, 1),
                    "mlp_width_kept": len(kept.neurons) / max(source.intermediate_size, 1),
                }
            )
        return cls(
            method=method,
            source_model=source_model or model.name_or_path or "unknown",
            format="pruned",
            params_before=count_parameters(source_config),
            params_after=count_parameters(model),
            layers_before=trace.num_source_layers,
            layers_after=config.num_hidden_layers,
            removed_layers=trace.removed_layers,
            per_layer=per_layer,
            kv_cache_bytes_per_token_before=kv_cache_bytes_per_token(source_config, dtype),
            kv_cache_bytes_per_token_after=kv_cache_bytes_per_token(config, dtype),
            dtype=str(dtype).removeprefix("torch."),
            width_kept={
                "attention": attention_widths[0] / max(attention_widths[1], 1),
                "mlp": mlp_widths[0] / max(mlp_widths[1], 1),
            },
            calibration=calibration,
            scores=scores,
            citation=citation,
            settings=dict(settings or {}),
            target=target,
            evaluation=dict(evaluation or {}),
            license=license,
            command=command,
            hf_prune_version=__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        """Write `pruning.json` into `directory`."""
        path = Path(directory) / RECORD_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PruningRecord:
        """Read `pruning.json` from a checkpoint directory."""
        data = json.loads((Path(directory) / RECORD_NAME).read_text(encoding="utf-8"))
        settings = data.get("settings") or {}
        if "target" in settings:  # older records kept the target among the method's settings
            data["settings"] = {key: value for key, value in settings.items() if key != "target"}
            data.setdefault("target", settings["target"])
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})
