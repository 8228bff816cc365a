"""Model cards: Hub metadata and prose generated from `pruning.json`, with the template in `model_cards/`."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._resources import resource_dir
from .record import PruningRecord
from .report import evaluation_rows, human_bytes, human_count, percent_change, speed_rows, task_rows

TEMPLATE = "pruned_model.md"


def looks_like_hub_id(name: str) -> bool:
    """`org/name` with no path-only characters: something the Hub could resolve as `base_model`."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and " " not in name


def _removed_summary(record: PruningRecord) -> str:
    parts = []
    if record.removed_layers:
        parts.append(f"{len(record.removed_layers)} of its {record.layers_before} decoder layers")
    for name, label in (("attention", "attention width"), ("mlp", "MLP width")):
        kept = record.width_kept.get(name, 1.0)
        if kept < 1.0:
            parts.append(f"{(1 - kept) * 100:.0f}% of the {label}" + (" in the other layers" if parts[:1] and record.removed_layers else ""))
    return ", ".join(parts) or "nothing"


def task_eval_results(tasks: dict | None) -> list[EvalResult]:
    """The model-index entries of lm-eval task accuracy: the checkpoint's own scores (healed if it was healed)."""
    if not tasks:
        return []
    results = []
    for task, entry in tasks["tasks"].items():
        scores = entry.get("healed") or entry["pruned"]
        dataset = tasks["settings"].get("datasets", {}).get(task) or {}
        split = tasks["settings"].get("splits", {}).get(task)
        for metric in ("acc", "acc_norm"):
            if metric not in scores:
                continue
            results.append(EvalResult(
                task_type="multiple-choice" if task != "lambada_openai" else "text-generation",
                dataset_type=dataset.get("type", task),
                dataset_name=dataset.get("name", task),
                dataset_config=dataset.get("config"),
                dataset_split=split,
                metric_type=metric,
                metric_name=f"{metric} ({tasks['settings']['num_fewshot']}-shot, lm-eval)",
                metric_value=round(scores[metric], 4),
            ))
    return results


def card_data(record: PruningRecord, model_name: str) -> ModelCardData:
    """The card's YAML metadata: base model, library, pipeline, licence, tags, and perplexity results."""
    eval_results = [
        EvalResult(
            task_type="text-generation",
            task_name="Language modeling",
            dataset_type=entry["text"],
            dataset_name=entry["text"],
            metric_type="perplexity",
            metric_name=f"perplexity ({entry['windows']}x{entry['seq_len']} tokens)",
            metric_value=round(entry.get("healed", entry["pruned"]), 4),
        )
        for entry in record.evaluation.get("perplexity", [])
    ]
    eval_results += task_eval_results(record.evaluation.get("tasks"))
    return ModelCardData(
        model_name=model_name,
        base_model=record.source_model if looks_like_hub_id(record.source_model) else None,
        library_name="transformers",
        pipeline_tag="text-generation",
        license=record.license,
        tags=["pruned", "hf-prune", record.method, f"{record.format}-format"]
        + (["healed", "distillation"] if record.healing or (record.scores or {}).get("shot_healing") else [])
        + (["quantized", record.quantization["weights"]] if record.quantization else []),
        eval_results=eval_results or None,
    )


def render_model_card(
    record: PruningRecord, *, repo_id: str | None = None, model_name: str | None = None, has_profile: bool = True
) -> str:
    """The `README.md` of a pruned checkpoint, rendered from its record (`has_profile`: show
    `pruning_profile.png`, which `hf-prune prune` and `push` write next to it).

    Example:

    ```python
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.provenance import PruningRecord
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> record = PruningRecord.from_model(hf_prune.remove_layers(model, [1]), source_model="me/tiny-llama")
    >>> from hf_prune.provenance import render_model_card
    >>> card = render_model_card(record, repo_id="me/tiny-llama-2l", has_profile=False)
    >>> card.splitlines()[0], "base_model: me/tiny-llama" in card
    ('---', True)

    ```
    """
    source_short = record.source_model.rstrip("/").split("/")[-1]
    task_models, task_table, task_note = task_rows(record.evaluation)
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else f"{source_short}-{record.method}")
    paper = record.citation
    layer_scores = (record.scores or {}).get("layer_scores")
    per_layer = [
        {**row, "score": f"{layer_scores[row['source_layer']]:.4f}" if layer_scores else ""} for row in record.per_layer
    ]
    speed_table, speed_settings = speed_rows(record.evaluation)
    card = ModelCard.from_template(
        card_data(record, model_name),
        template_path=str(resource_dir("model_cards") / TEMPLATE),
        model_name=model_name,
        repo_id=repo_id or f"path/to/{model_name}",
        source_model=record.source_model,
        method=record.method,
        paper=paper,
        paper_short=paper.split(". ")[1] if paper else None,
        removed_summary=_removed_summary(record),
        params_before_h=human_count(record.params_before),
        params_after_h=human_count(record.params_after),
        params_change=percent_change(record.params_before, record.params_after),
        layers_before=record.layers_before,
        layers_after=record.layers_after,
        kv_before_h=human_bytes(record.kv_cache_bytes_per_token_before),
        kv_after_h=human_bytes(record.kv_cache_bytes_per_token_after),
        dtype=record.dtype,
        license=record.license,
        format=record.format,
        architecture=record.architecture,
        hf_prune_version=record.hf_prune_version,
        removed_layers=record.removed_layers,
        settings={**{key: value for key, value in record.settings.items() if key != "method"},
                  **({"target": record.target} if record.target else {})},
        calibration=record.calibration,
        per_layer=per_layer,
        has_layer_scores=bool(layer_scores),
        evaluation_rows=evaluation_rows(record.evaluation),
        task_models=task_models,
        task_rows=task_table,
        task_note=task_note,
        evaluation_machine=record.evaluation.get("machine"),
        speed_rows=speed_table,
        speed_settings=speed_settings,
        command=record.command or "# pruned with the hf_prune Python API",
        has_profile=has_profile,
        quantization=record.quantization,
        healing=_healing_summary(record.healing),
        shot_healing=_shot_healing_summary((record.scores or {}).get("shot_healing")),
        gguf=(record.serving or {}).get("gguf"),
        gguf_name=f"{model_name}-f16.gguf",
    )
    return str(card)


def _shot_healing_summary(shot_healing: dict | None) -> dict | None:
    if not shot_healing or not shot_healing.get("shots"):
        return None
    runs = shot_healing["shots"]
    return {
        "teacher": shot_healing.get("teacher"),
        "heals": len(runs),
        "tokens_h": human_count(runs[0]["tokens"]),
        "data": shot_healing.get("data", {}).get("source"),
        "minutes": f"{sum(run['wall_seconds'] for run in runs) / 60:.1f}",
    }


def _healing_summary(healing: dict | None) -> dict | None:
    if not healing:
        return None
    config = healing.get("config", {})
    before, after = healing.get("held_out_perplexity_before"), healing.get("held_out_perplexity_after")
    return {
        "teacher": healing.get("teacher"),
        "tokens_h": human_count(healing["tokens"]),
        "steps": healing["steps"],
        "kind": f"LoRA rank {healing['lora_rank']} (merged)" if healing.get("lora_rank") else "all parameters",
        "loss": config.get("loss", "kd"),
        "temperature": config.get("temperature", 1.0),
        "intermediate_weight": config.get("intermediate_weight", 0.0),
        "data": healing.get("data", {}).get("source"),
        "lr": healing.get("learning_rate"),
        "before": f"{before:.2f}" if before is not None else None,
        "after": f"{after:.2f}" if after is not None else None,
        "minutes": f"{healing.get('wall_seconds', 0) / 60:.1f}",
        "has_curve": bool(healing.get("held_out")),
    }
