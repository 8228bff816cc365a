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

Files: this page (`app.py`), the models and their side-by-side generation (`space_generation.py`), and the view of the
checkpoint's provenance, whose pruning profile `hf_prune.provenance` draws (`space_figures.py`).

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
import sys
from pathlib import Path

import gradio as gr
import torch

# The Space's own modules sit beside this file, however it is started (`python app.py`, the Hub, `hf-prune demo`).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from space_figures import facts_markdown, layer_table, profile_facts, profile_figure  # noqa: E402
from space_generation import (  # noqa: E402
    DEFAULT_NEW_TOKENS,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_PROMPT_TOKENS,
    MAX_SEED,
    MAX_TEMPERATURE,
    MIN_NEW_TOKENS,
    Settings,
    load_cached,
    load_models,
    model_card_line,
    run_generation,
)

__all__ = ["Settings", "create_app", "load_cached", "load_models", "main", "run_generation", "space_settings"]

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
