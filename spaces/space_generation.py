"""The demo Space's models and generation: each model loaded once per process, and two models generating side by side.

Part of the Space (`app.py` builds the page from it); it uses only hf-prune's and transformers' public APIs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

import hf_prune
from hf_prune.architecture.modeling_pruned import CACHE_NAME
from hf_prune.checkpoint.load import BUILTIN_MODELS
from hf_prune.evaluation.speed import cache_length, measured_kv_bytes_per_token, model_bytes
from hf_prune.provenance import count_parameters, human_bytes, human_count, kv_cache_bytes_per_token

logger = logging.getLogger("hf_prune.space")

MAX_PROMPT_CHARS = 2000
MAX_PROMPT_TOKENS = 512
MIN_NEW_TOKENS, MAX_NEW_TOKENS, DEFAULT_NEW_TOKENS = 1, 256, 64
MAX_TEMPERATURE = 2.0
MAX_SEED = 2**31 - 1
NO_BASE = {"", "none", "no", "off", "false"}


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
