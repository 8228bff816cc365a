"""`pruning.json`: the provenance written next to every pruned checkpoint, and read back by the card and the pusher."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from ..architecture.families import pruned_config_from
from ..evaluation.size import count_parameters, kv_cache_bytes_per_token
from ..surgery.trace import PruningTrace
from .streamed import is_streamed

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
        per_layer: for each kept layer, its `source_layer`, widths, the source indices it kept, and the fractions
            of its source attention width (heads x head_dim) and MLP width it kept.
        kv_cache_bytes_per_token_before / _after: at the checkpoint's dtype.
        dtype: the dtype of the weights.
        width_kept: in the layers that remain, the fraction of the source's attention width (heads x head_dim) and
            MLP width (intermediate neurons) kept.
        calibration: `source`, `num_samples`, `seq_len`, `tokens_sha256` (and `seed`), or `None` for manual pruning.
        scores: the scores that decided what to remove, as the method produced them.
        settings: the method's configuration.
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
    >>> record = PruningRecord.load("pruned-smollm2")  # doctest: +SKIP
    >>> record.removed_layers  # doctest: +SKIP
    [17, 18, 19, 20, 21, 22, 24]

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
    settings: dict[str, Any] = field(default_factory=dict)
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
        settings: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        license: str | None = None,
        command: str | None = None,
    ) -> PruningRecord:
        """Describe a model that surgery produced (its `pruning_trace` says what it kept of its source)."""
        from .. import __version__

        config = pruned_config_from(model.config)
        trace = getattr(model, "pruning_trace", None) or PruningTrace.identity(config)
        source_config = trace.source_config or config
        # A layer-streamed model lives on the meta device; its weights keep the dtype they are streamed in.
        dtype = model.stream_source.dtype if is_streamed(model) else model.dtype
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
            settings=dict(settings or {}),
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
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})
