"""Gradio Space: try a model pruned by hf-prune next to the model it was pruned from.

Settings (the Space's variables, or the environment of `python app.py`):

- `HF_PRUNE_MODEL`: the pruned model, a Hub id or a local checkpoint directory. Without it, the first entry of
  `models:` in the README.md beside this file is used (the Space card the pusher writes).
- `HF_PRUNE_BASE_MODEL`: the model to compare with: a Hub id, a local directory, or the built-in alias
  `smollm2-135m`; `none` for no comparison. Without it: the second entry of the README's `models:`, else the
  `source_model` of the checkpoint's `pruning.json` (and, where that is the Hub id of a built-in model that cannot be
  downloaded, the built-in copy).
- `HF_PRUNE_THREADS`: optional number of torch CPU threads.
- Gradio's own: `GRADIO_SERVER_NAME`, `GRADIO_SERVER_PORT`, `GRADIO_ANALYTICS_ENABLED`.

Public functions: `create_app(model, base=None) -> gr.Blocks` builds the page (models load once, when it is built, and
are cached for the process), `space_settings()` reads the settings above, `load_cached(name)` loads one model.

API (`gradio_client.Client(url)`):

- `/generate` (prompt, max_new_tokens, temperature, top_p, seed, chat_template) -> (pruned text, pruned stats
  markdown, source text, source stats markdown, run details dict). The dict has `pruned` and `base` (None without a
  source model), each with `text`, `new_tokens`, `tokens_per_s`, `seconds`, `first_token_ms`, `finish_reason`,
  `weights_bytes`, `kv_cache_bytes`, `parameters`, `kv_cache_bytes_per_token`; plus `prompt`, `settings`,
  `speedup` and `notes`.
- `/profile` () -> dict: `model`, `base_model`, `errors`, `notes`, `record` (key facts of pruning.json, None when the
  model has none), `models` (measured parameters, KV cache bytes per token, weight bytes of each loaded model),
  `layers` (one row per source layer).

The Space card template `README.md` beside this file is a Jinja template with `title`, `license`,
`short_description` (at most 60 characters), `model_id` (the pruned repo), `base_model_id` (its source; empty to
list none) and `space_id` (the Space's own id, in the usage example); `hf_prune.hub.space.render_space_card` fills it
when `hf-prune push --space-id` uploads this folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from transformers import DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

import hf_prune
from hf_prune.checkpoint.load import BUILTIN_MODELS
from hf_prune.evaluation import count_parameters, kv_cache_bytes_per_token
from hf_prune.evaluation.report import evaluation_rows, human_bytes, human_count, percent_change
from hf_prune.architecture.modeling_pruned import CACHE_NAME
from hf_prune.evaluation.speed import cache_length, measured_kv_bytes_per_token, model_bytes
from hf_prune.hub.profile import profile_rows

logger = logging.getLogger("hf_prune.space")

MAX_PROMPT_CHARS = 2000
MAX_PROMPT_TOKENS = 512
MIN_NEW_TOKENS, MAX_NEW_TOKENS, DEFAULT_NEW_TOKENS = 1, 256, 64
MAX_TEMPERATURE = 2.0
MAX_SEED = 2**31 - 1
NO_BASE = {"", "none", "no", "off", "false"}

EXAMPLES = [
    "The capital of France is",
    "Write a short poem about pruning a tree.",
    "Explain in two sentences what a transformer language model does.",
    "List three tips for writing clear Python code.",
    "Once upon a time, in a small village by the sea,",
]

BOUNDS_NOTE = (
    f"Prompts are capped at {MAX_PROMPT_CHARS:,} characters and their last {MAX_PROMPT_TOKENS} tokens; "
    f"{MIN_NEW_TOKENS} to {MAX_NEW_TOKENS} new tokens. Temperature 0 is greedy decoding (top-p and seed unused); "
    "both models get the same prompt, settings and seed, and take turns token by token, so each one's tokens/s is "
    "its own compute time."
)


# ----------------------------------------------------------------------------------------------------------- models


@dataclass
class ModelInfo:
    """A loaded model with the figures the page shows for it."""

    name: str
    loaded: hf_prune.LoadedModel
    parameters: int
    kv_bytes_per_token: int
    weights_bytes: int

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer


_CACHE: dict[str, tuple[ModelInfo | None, str | None]] = {}
_CACHE_LOCK = threading.Lock()


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(error, hf_prune.HfPruneError) and line:
        return line
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def load_cached(name: str) -> tuple[ModelInfo | None, str | None]:
    """`(model, None)`, or `(None, one-line reason)` when it cannot be loaded; each name is loaded once a process."""
    with _CACHE_LOCK:
        if name not in _CACHE:
            try:
                loaded = hf_prune.load_model(name, dtype=torch.float32, require_supported=False)
                model = loaded.model
                _CACHE[name] = (
                    ModelInfo(
                        name=name,
                        loaded=loaded,
                        parameters=count_parameters(model),
                        kv_bytes_per_token=kv_cache_bytes_per_token(model.config, model.dtype),
                        weights_bytes=model_bytes(model),
                    ),
                    None,
                )
            except Exception as error:  # anything: the page shows one line, the log keeps the traceback
                logger.warning("cannot load %s", name, exc_info=True)
                _CACHE[name] = (None, _one_line(error))
        return _CACHE[name]


@dataclass
class Models:
    """What `create_app` loaded: the pruned model, the source model, and what the page says about them."""

    model_name: str
    base_name: str | None = None
    pruned: ModelInfo | None = None
    base: ModelInfo | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def record(self) -> dict[str, Any] | None:
        return self.pruned.loaded.record if self.pruned else None


def load_models(model: str, base: str | None = None) -> Models:
    """Load the pruned model and its source; failures become readable messages, never exceptions."""
    models = Models(model_name=model or "")
    if not model:
        models.errors.append("No model is configured: set the `HF_PRUNE_MODEL` variable to a Hub id or a directory.")
        return models
    models.pruned, error = load_cached(model)
    if error:
        models.errors.append(f"Could not load the pruned model `{model}`: {error}")

    if base is not None and base.strip().lower() in NO_BASE:
        models.notes.append("No source model to compare with (`HF_PRUNE_BASE_MODEL` is `none`).")
        return models
    if base:
        candidates = [base]
    else:
        source = (models.record or {}).get("source_model")
        if not source or source == "unknown":
            if models.pruned:
                models.notes.append(
                    "No source model to compare with: the checkpoint names none; set `HF_PRUNE_BASE_MODEL`."
                )
            return models
        candidates = [source] + [alias for alias, builtin in BUILTIN_MODELS.items() if builtin.hub_id == source]
    failures = []
    for candidate in candidates:
        info, error = load_cached(candidate)
        if info is not None:
            models.base, models.base_name = info, candidate
            break
        failures.append(f"`{candidate}`: {error}")
    if models.base is None:
        models.base_name = candidates[0]
        models.notes.append(
            "Could not load the source model, so only the pruned model runs. " + "; ".join(failures)
        )
    elif failures:
        models.notes.append(
            f"Comparing with the built-in copy `{models.base_name}` of `{candidates[0]}` (the original could not be "
            f"loaded: {failures[0].split(': ', 1)[1]})."
        )
    return models


# ------------------------------------------------------------------------------------------------------- generation


@dataclass
class Settings:
    prompt: str
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    chat_template: bool
    notes: list[str] = field(default_factory=list)

    @classmethod
    def bounded(cls, prompt, max_new_tokens, temperature, top_p, seed, chat_template) -> Settings:
        """The settings a request asked for, brought inside the page's bounds (API calls can ask for anything)."""
        notes = []
        prompt = "" if prompt is None else str(prompt)
        if len(prompt) > MAX_PROMPT_CHARS:
            prompt = prompt[:MAX_PROMPT_CHARS]
            notes.append(f"prompt cut to {MAX_PROMPT_CHARS:,} characters")

        def number(value, default, low, high, kind):
            try:
                value = kind(value)
            except (TypeError, ValueError):
                value = default
            if value != value:  # NaN
                value = default
            return min(max(value, low), high)

        return cls(
            prompt=prompt,
            max_new_tokens=number(max_new_tokens, DEFAULT_NEW_TOKENS, MIN_NEW_TOKENS, MAX_NEW_TOKENS, int),
            temperature=number(temperature, 0.0, 0.0, MAX_TEMPERATURE, float),
            top_p=number(top_p, 1.0, 0.01, 1.0, float),
            seed=number(seed, 0, 0, MAX_SEED, int),
            chat_template=bool(chat_template),
            notes=notes,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "chat_template": self.chat_template,
            "greedy": self.temperature == 0,
        }


def encode_prompt(tokenizer, prompt: str, chat_template: bool) -> tuple[torch.Tensor, bool, bool]:
    """`(input ids [1, n], whether the text was cut to MAX_PROMPT_TOKENS, whether the chat template was applied)`."""
    text_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    truncated = len(text_ids) > MAX_PROMPT_TOKENS
    if truncated:
        prompt = tokenizer.decode(text_ids[-MAX_PROMPT_TOKENS:])
    if chat_template and getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True
        )
        ids, templated = encoded["input_ids"], True
    else:
        ids, templated = tokenizer(prompt)["input_ids"], False
    return torch.tensor([list(ids)], dtype=torch.long), truncated, templated


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


class Generation:
    """One model's generation, one token per `step()`: greedy (temperature 0) or sampled with temperature and top-p.

    Greedy decoding gives what `model.generate(do_sample=False)` gives: the same forward passes with a KV cache,
    stopping at the model's end-of-sequence token or after `max_new_tokens`.
    """

    def __init__(self, info: ModelInfo, settings: Settings):
        self.info = info
        self.settings = settings
        self.input_ids, self.truncated, self.templated = encode_prompt(
            info.tokenizer, settings.prompt, settings.chat_template
        )
        self.prompt_tokens = self.input_ids.shape[1]
        self.cache = DynamicCache(config=info.model.config)
        self.next_input = self.input_ids
        self.tokens: list[int] = []
        self.seconds = 0.0
        self.first_token_s: float | None = None
        self.finish_reason: str | None = None
        self.eos = _eos_ids(info.model, info.tokenizer)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.warpers = LogitsProcessorList()
        if settings.temperature > 0:
            self.warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(settings.top_p))

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @torch.inference_mode()
    def step(self) -> None:
        start = time.perf_counter()
        logits = self.info.model(
            input_ids=self.next_input, use_cache=True, logits_to_keep=1, **{CACHE_NAME: self.cache}
        ).logits[:, -1, :].float()
        if self.settings.temperature > 0:
            sequence = torch.cat([self.input_ids, torch.tensor([self.tokens], dtype=torch.long)], dim=1)
            scores = self.warpers(sequence, logits)
            token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator))
        else:
            token = int(logits.argmax(-1))
        self.seconds += time.perf_counter() - start
        if self.first_token_s is None:
            self.first_token_s = self.seconds
        self.tokens.append(token)
        self.next_input = torch.tensor([[token]], dtype=torch.long)
        if token in self.eos:
            self.finish_reason = "eos"
        elif len(self.tokens) >= self.settings.max_new_tokens:
            self.finish_reason = "length"

    @property
    def text(self) -> str:
        return self.info.tokenizer.decode(self.tokens, skip_special_tokens=True)

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds else 0.0

    def kv_cache_bytes(self) -> int:
        held = cache_length(self.cache)
        return measured_kv_bytes_per_token(self.cache, held) * held if held else 0

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.info.name,
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "prompt_truncated": self.truncated,
            "chat_template": self.templated,
            "new_tokens": len(self.tokens),
            "seconds": round(self.seconds, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "first_token_ms": round(self.first_token_s * 1000, 1) if self.first_token_s is not None else None,
            "finish_reason": self.finish_reason,
            "weights_bytes": self.info.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes(),
            "parameters": self.info.parameters,
            "kv_cache_bytes_per_token": self.info.kv_bytes_per_token,
        }

    def stats_markdown(self) -> str:
        state = {"eos": "stopped at end of sequence", "length": "reached the token limit", None: "generating..."}
        first = f", first token {self.first_token_s * 1000:.0f} ms" if self.first_token_s is not None else ""
        lines = [
            f"**{self.tokens_per_s:.1f} tokens/s**: {len(self.tokens)} new tokens in {self.seconds:.2f} s{first} "
            f"({state[self.finish_reason]}); prompt {self.prompt_tokens} tokens"
            + (" (cut to its last tokens)" if self.truncated else ""),
            f"Memory: weights {human_bytes(self.info.weights_bytes)}, KV cache {human_bytes(self.kv_cache_bytes())} for "
            f"{cache_length(self.cache)} tokens ({human_bytes(self.info.kv_bytes_per_token)} per token)",
        ]
        return "\n\n".join(lines)


def model_card_line(info: ModelInfo | None, error: str | None = None) -> str:
    if info is None:
        return f"⚠️ {error}" if error else "Not loaded."
    return (
        f"`{info.name}`: {human_count(info.parameters)} parameters, "
        f"{info.model.config.num_hidden_layers} layers, KV cache {human_bytes(info.kv_bytes_per_token)} per token"
    )


def run_generation(models: Models, prompt, max_new_tokens, temperature, top_p, seed, chat_template):
    """Stream both models' generations: yields (pruned text, pruned stats, base text, base stats, details)."""
    settings = Settings.bounded(prompt, max_new_tokens, temperature, top_p, seed, chat_template)
    details: dict[str, Any] = {
        "prompt": settings.prompt,
        "settings": settings.as_dict(),
        "pruned": None,
        "base": None,
        "speedup": None,
        "notes": list(settings.notes),
        "error": None,
    }
    base_note = "No source model loaded." if models.base is None else ""
    if models.pruned is None:
        message = " ".join(models.errors) or "The pruned model is not loaded."
        details["error"] = message
        yield "", f"⚠️ {message}", "", base_note, details
        return
    if not settings.prompt.strip():
        details["error"] = "The prompt is empty: type a prompt first."
        yield "", "⚠️ Type a prompt first.", "", "", details
        return

    runs = [Generation(models.pruned, settings)]
    if models.base is not None:
        runs.append(Generation(models.base, settings))
    if any(run.truncated for run in runs):
        details["notes"].append(f"prompt cut to its last {MAX_PROMPT_TOKENS} tokens")

    def outputs():
        pruned, base = runs[0], runs[1] if len(runs) > 1 else None
        details["pruned"] = pruned.summary()
        details["base"] = base.summary() if base else None
        if base and pruned.tokens_per_s and base.tokens_per_s:
            details["speedup"] = round(pruned.tokens_per_s / base.tokens_per_s, 3)
        return (
            pruned.text,
            pruned.stats_markdown(),
            base.text if base else "",
            base.stats_markdown() if base else base_note,
            details,
        )

    yield outputs()
    while not all(run.done for run in runs):
        for run in runs:
            if not run.done:
                run.step()
        yield outputs()


# ---------------------------------------------------------------------------------------------------------- profile


def _source_layer_config(models: Models, layer: int):
    if models.base is None:
        return None
    layers = models.base.model.config.per_layer_config
    return layers[layer] if layer < len(layers) else None


def layer_rows(models: Models) -> list[dict[str, Any]]:
    """One row per source layer: kept or removed, its score, and the widths kept (with the source's where known)."""
    record = models.record
    if not record:
        return []
    by_source = {layer["source_layer"]: layer for layer in record["per_layer"]}
    rows = []
    for row in profile_rows(record):
        kept = by_source.get(row["layer"])
        source = _source_layer_config(models, row["layer"])
        heads = kept["num_attention_heads"] if kept else 0
        kv_heads = kept["num_key_value_heads"] if kept else 0
        entry = {
            "source_layer": row["layer"],
            "kept": row["kept"],
            "layer": kept["layer"] if kept else None,
            "score": row["score"],
            "heads": heads,
            "kv_heads": kv_heads,
            "head_dim": kept["head_dim"] if kept else None,
            "intermediate_size": kept["intermediate_size"] if kept else 0,
            "attention_kept": row["attention_kept"],
            "mlp_kept": row["mlp_kept"],
            "heads_kept": row["attention_kept"],
            "kv_heads_kept": None,
            "source_heads": None,
            "source_kv_heads": None,
            "source_intermediate_size": None,
        }
        if source is not None:
            entry["source_heads"] = source.num_attention_heads
            entry["source_kv_heads"] = source.num_key_value_heads
            entry["source_intermediate_size"] = source.intermediate_size
            entry["heads_kept"] = heads / max(source.num_attention_heads, 1)
            entry["kv_heads_kept"] = kv_heads / max(source.num_key_value_heads, 1)
        rows.append(entry)
    return rows


def profile_figure(models: Models):
    """Per source layer: its score (blue kept, red removed) above the query heads, KV heads and MLP width it kept."""
    from matplotlib.figure import Figure

    record = models.record
    rows = layer_rows(models)
    if not rows:
        figure = Figure(figsize=(8, 1.4))
        axis = figure.add_subplot()
        axis.axis("off")
        reason = "the model did not load" if models.pruned is None else "this checkpoint has no pruning.json"
        axis.text(0.5, 0.5, f"No pruning profile: {reason}.", ha="center", va="center", fontsize=11)
        return figure
    has_scores = rows[0]["score"] is not None
    layers = [row["source_layer"] for row in rows]
    figure = Figure(figsize=(9, 5.2 if has_scores else 3.0), layout="constrained")
    axes = figure.subplots(2 if has_scores else 1, 1, sharex=True, squeeze=False)[:, 0]
    if has_scores:
        colours = ["#4C72B0" if row["kept"] else "#C44E52" for row in rows]
        axes[0].bar(layers, [row["score"] for row in rows], color=colours)
        axes[0].set_ylabel("layer score")
        axes[0].set_title(
            f"{record['method']}: {record['layers_after']} of {record['layers_before']} layers kept "
            "(blue kept, red removed)",
            fontsize=10,
        )
    axis = axes[-1]
    know_kv = any(row["kv_heads_kept"] is not None for row in rows)
    series = [
        ("query heads" if know_kv else "attention width", "heads_kept", "#55A868"),
        *([("KV heads", "kv_heads_kept", "#DD8452")] if know_kv else []),
        ("MLP width", "mlp_kept", "#8172B2"),
    ]
    width = 0.8 / len(series)
    for index, (label, key, colour) in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        axis.bar([x + offset for x in layers], [row[key] or 0.0 for row in rows], width=width, label=label, color=colour)
    for row in rows:
        if not row["kept"]:
            axis.axvspan(row["source_layer"] - 0.5, row["source_layer"] + 0.5, color="#C44E52", alpha=0.12, lw=0)
    axis.set_ylim(0, 1.3)
    axis.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    axis.set_ylabel("kept / source")
    axis.set_xlabel("source layer (shaded: removed)")
    axis.set_xlim(min(layers) - 0.6, max(layers) + 0.6)
    axis.legend(loc="upper center", fontsize=8, ncols=len(series), frameon=False)
    if not has_scores:
        axis.set_title(f"{record['method']}: width kept per layer", fontsize=10)
    return figure


def record_facts(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The key facts of pruning.json, as the profile API returns them."""
    if not record:
        return None
    keys = [
        "method", "source_model", "format", "params_before", "params_after", "layers_before", "layers_after",
        "removed_layers", "kv_cache_bytes_per_token_before", "kv_cache_bytes_per_token_after", "dtype",
        "width_kept", "calibration", "hf_prune_version",
    ]
    facts = {key: record.get(key) for key in keys}
    facts["perplexity"] = (record.get("evaluation") or {}).get("perplexity") or []
    facts["has_layer_scores"] = bool((record.get("scores") or {}).get("layer_scores"))
    return facts


def facts_markdown(models: Models) -> str:
    record = models.record
    if not record:
        if models.pruned is None:
            return "No facts: the pruned model did not load."
        return f"`{models.model_name}` has no `pruning.json`, so it was not written by hf-prune; only generation runs."
    removed = ", ".join(str(layer) for layer in record.get("removed_layers") or []) or "none"
    width = record.get("width_kept") or {}
    calibration = record.get("calibration")
    if calibration:
        sha = str(calibration.get("tokens_sha256") or "")
        calibration_line = (
            f"`{calibration.get('source')}`, {calibration.get('num_samples')} samples x {calibration.get('seq_len')} "
            f"tokens, tokens sha256 `{sha[:16]}{'...' if len(sha) > 16 else ''}`"
        )
    else:
        calibration_line = "none (manual pruning)"
    lines = [
        f"- **Method** `{record['method']}`, **format** `{record['format']}`, **dtype** `{record.get('dtype')}`",
        f"- **Source model** `{record['source_model']}`",
        f"- **Removed layers** (source numbering): {removed}",
        f"- **Width kept** in the remaining layers: attention {width.get('attention', 1.0):.0%}, "
        f"MLP {width.get('mlp', 1.0):.0%}",
        f"- **Calibration** {calibration_line}",
        "",
        "| | source | pruned | change |",
        "|---|---:|---:|---:|",
        f"| parameters | {human_count(record['params_before'])} | {human_count(record['params_after'])} | "
        f"{percent_change(record['params_before'], record['params_after'])} |",
        f"| layers | {record['layers_before']} | {record['layers_after']} | "
        f"{percent_change(record['layers_before'], record['layers_after'])} |",
        f"| KV cache per token | {human_bytes(record['kv_cache_bytes_per_token_before'])} | "
        f"{human_bytes(record['kv_cache_bytes_per_token_after'])} | "
        f"{percent_change(record['kv_cache_bytes_per_token_before'], record['kv_cache_bytes_per_token_after'])} |",
    ]
    rows = evaluation_rows(record.get("evaluation") or {})
    if rows:
        lines += [
            "",
            "**Perplexity** (lower is better)",
            "",
            "| text | windows | source | pruned | change |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {row['text']} | {row['windows']} x {row['seq_len']} | {row['dense']} | {row['pruned']} | "
                f"{row['change']} |"
                for row in rows
            ),
        ]
    if record.get("hf_prune_version"):
        lines += ["", f"Written by hf-prune {record['hf_prune_version']}."]
    return "\n".join(lines)


def layer_table(models: Models) -> list[list[Any]]:
    def fraction(kept, source):
        return f"{kept}" if source is None else f"{kept} / {source}"

    table = []
    for row in layer_rows(models):
        table.append(
            [
                row["source_layer"],
                f"kept as {row['layer']}" if row["kept"] else "removed",
                "" if row["score"] is None else f"{row['score']:.5f}",
                fraction(row["heads"], row["source_heads"]),
                fraction(row["kv_heads"], row["source_kv_heads"]),
                "" if row["head_dim"] is None else row["head_dim"],
                fraction(row["intermediate_size"], row["source_intermediate_size"]),
                f"{row['mlp_kept']:.0%}",
            ]
        )
    return table


def profile_facts(models: Models) -> dict[str, Any]:
    def figures(info: ModelInfo | None):
        if info is None:
            return None
        return {
            "name": info.name,
            "parameters": info.parameters,
            "kv_cache_bytes_per_token": info.kv_bytes_per_token,
            "weights_bytes": info.weights_bytes,
            "layers": info.model.config.num_hidden_layers,
        }

    return {
        "model": models.model_name,
        "base_model": models.base_name,
        "errors": list(models.errors),
        "notes": list(models.notes),
        "record": record_facts(models.record),
        "models": {"pruned": figures(models.pruned), "base": figures(models.base)},
        "layers": layer_rows(models),
    }


# -------------------------------------------------------------------------------------------------------------- app


def create_app(model: str, base: str | None = None) -> gr.Blocks:
    """The Space's page for the pruned `model` and its source `base` (default: its pruning.json's `source_model`).

    Both models are loaded now (once per process); one that fails to load is reported on the page, and the page
    works with what did load. Launch it with `.queue().launch(...)`.
    """
    models = load_models(model, base)
    pruned_title = models.model_name or "(not configured)"
    with gr.Blocks(title=f"hf-prune: {pruned_title}", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# ✂️ Pruned vs source\n"
            f"**Pruned** `{pruned_title}` next to **source** `{models.base_name or 'none'}`: the same prompt and "
            "sampling settings, generated side by side on this machine. Made with "
            "[hf-prune](https://github.com/hf-prune/hf-prune)."
        )
        messages = [f"⚠️ {error}" for error in models.errors] + [f"ℹ️ {note}" for note in models.notes]
        gr.Markdown("\n\n".join(messages), visible=bool(messages), elem_id="load-status")

        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(
                    label=f"Prompt (at most {MAX_PROMPT_CHARS:,} characters)",
                    placeholder="Type a prompt, or pick an example below",
                    lines=4,
                    max_lines=12,
                    max_length=MAX_PROMPT_CHARS,
                    elem_id="prompt",
                )
                gr.Examples(examples=[[text] for text in EXAMPLES], inputs=[prompt], label="Example prompts")
            with gr.Column(scale=2):
                max_new_tokens = gr.Slider(
                    MIN_NEW_TOKENS, MAX_NEW_TOKENS, value=DEFAULT_NEW_TOKENS, step=1,
                    label=f"Max new tokens ({MIN_NEW_TOKENS}-{MAX_NEW_TOKENS})",
                    elem_id="max-new-tokens",
                )
                temperature = gr.Slider(0.0, MAX_TEMPERATURE, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p (when sampling)")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed (when sampling)")
                has_template = any(
                    info is not None and getattr(info.tokenizer, "chat_template", None)
                    for info in (models.pruned, models.base)
                )
                chat_template = gr.Checkbox(
                    value=bool(has_template),
                    interactive=bool(has_template),
                    label="Use the chat template" if has_template else "Chat template (the tokenizer has none)",
                )
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate", interactive=models.pruned is not None)
                    stop = gr.Button("Stop", variant="stop")
        gr.Markdown(BOUNDS_NOTE)

        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown(f"### Pruned\n{model_card_line(models.pruned, ' '.join(models.errors))}")
                pruned_text = gr.Textbox(
                    label="Pruned model output", lines=10, max_lines=20, interactive=False, elem_id="pruned-output"
                )
                pruned_stats = gr.Markdown(elem_id="pruned-stats")
            with gr.Column():
                base_error = next((n for n in models.notes if n.startswith("Could not load the source")), None)
                gr.Markdown(
                    f"### Source\n{model_card_line(models.base, base_error or 'No source model to compare with.')}"
                )
                base_text = gr.Textbox(
                    label="Source model output", lines=10, max_lines=20, interactive=False, elem_id="base-output"
                )
                base_stats = gr.Markdown(elem_id="base-stats")
        with gr.Accordion("Run details (what the /generate API returns)", open=False):
            details = gr.JSON(label="Run details")

        gr.Markdown("## Pruning profile")
        with gr.Row():
            with gr.Column(scale=3):
                gr.Plot(value=profile_figure(models), label="Pruning profile", show_label=False, elem_id="profile-plot")
            with gr.Column(scale=2):
                gr.Markdown(facts_markdown(models), elem_id="facts")
        table = layer_table(models)
        if table:
            with gr.Accordion("Per-layer widths (kept / source)", open=False):
                gr.Dataframe(
                    value=table,
                    headers=["source layer", "status", "score", "query heads", "KV heads", "head dim", "MLP width",
                             "MLP kept"],
                    interactive=False,
                    wrap=True,
                )

        def generate(prompt, max_new_tokens, temperature, top_p, seed, chat_template):
            yield from run_generation(models, prompt, max_new_tokens, temperature, top_p, seed, chat_template)

        inputs = [prompt, max_new_tokens, temperature, top_p, seed, chat_template]
        outputs = [pruned_text, pruned_stats, base_text, base_stats, details]
        events = [
            run.click(generate, inputs, outputs, api_name="generate", concurrency_limit=1),
            prompt.submit(generate, inputs, outputs, api_visibility="private", concurrency_limit=1),
        ]
        stop.click(None, None, None, cancels=events, api_visibility="private")

        def profile() -> dict:
            """Key facts of the pruned checkpoint (pruning.json), the loaded models' sizes, and load errors."""
            return profile_facts(models)

        gr.api(profile, api_name="profile")
    return demo


def _front_matter_models(readme: Path) -> list[str]:
    """The `models:` of the Space card beside this file, when the pusher filled it in."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return []
    if not text.startswith("---"):
        return []
    import yaml

    try:
        data = yaml.safe_load(text.split("---", 2)[1]) or {}
    except Exception:  # the unfilled template, or a card that is not YAML: no models from it
        return []
    if not isinstance(data, dict):
        return []
    names = data.get("models") or []
    return [str(name) for name in names if name and "{{" not in str(name)] if isinstance(names, list) else []


def space_settings(environ=None, readme: Path | None = None) -> tuple[str, str | None]:
    """`(model, base)` from `HF_PRUNE_MODEL` / `HF_PRUNE_BASE_MODEL`, else from the Space card's `models:`."""
    environ = os.environ if environ is None else environ
    listed = _front_matter_models(readme or Path(__file__).with_name("README.md"))
    model = environ.get("HF_PRUNE_MODEL", "").strip() or (listed[0] if listed else "")
    base = environ.get("HF_PRUNE_BASE_MODEL")
    if base is None and not environ.get("HF_PRUNE_MODEL", "").strip() and len(listed) > 1:
        base = listed[1]
    return model, base.strip() if isinstance(base, str) else None


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    if os.environ.get("HF_PRUNE_THREADS"):
        torch.set_num_threads(max(1, int(os.environ["HF_PRUNE_THREADS"])))
    model, base = space_settings()
    create_app(model, base).queue(max_size=32).launch()


if __name__ == "__main__":
    main()
