"""`heal`: a pruned checkpoint in, a healed checkpoint out, in the same format, with its provenance."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from ..calibration.data import load_calibration, load_text
from ..checkpoint import PruningRecord, load_model, save_pruned
from ..checkpoint.load import BUILTIN_MODELS
from ..checkpoint.record import RECORD_NAME
from ..checkpoint.save import check_output_dir
from ..errors import HealingError
from .config import HealingConfig
from .trainer import STATE_FILE, HealingResult, check_teacher, heal_model

CURVE_NAME = "healing_curve.png"


def state_dir_for(output_dir: str | Path) -> Path:
    """Where a run writing `output_dir` keeps its resumable checkpoints until the output is complete."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".healing")


def teacher_name(source_model: str) -> str:
    """The teacher to load for a source model: a built-in copy when the source is a built-in model's Hub id."""
    return next((alias for alias, builtin in BUILTIN_MODELS.items() if builtin.hub_id == source_model), source_model)


def training_windows(tokenizer, config: HealingConfig):
    """The training windows: every consecutive window of the data source (never the evaluation split), and its name."""
    data = load_calibration(tokenizer, config.data, num_samples=None, seq_len=config.seq_len)
    return data.input_ids, data.source


def curve_png(healing: dict) -> bytes:
    """Held-out perplexity against training tokens, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    points = healing["held_out"]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([p["tokens"] for p in points], [p["perplexity"] for p in points], marker="o")
    axis.set_xlabel("training tokens")
    axis.set_ylabel("held-out perplexity")
    axis.set_title(f"Healing by distillation ({healing['config']['loss']})")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def heal(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: HealingConfig | None = None,
    *,
    teacher: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
    **options,
) -> PruningRecord:
    """Heal the pruned checkpoint in `checkpoint` by distillation and write it to `output_dir`, atomically.

    The teacher is the source model named in the checkpoint's `pruning.json` unless `teacher` names another (a
    directory, a Hub id or `smollm2-135m`). The output keeps the input's format (stock or pruned, with its remote
    code) and gains `healing` in `pruning.json`, a section in the card and `healing_curve.png`. Resumable state is
    kept in `<output_dir>.healing/` while the run lasts; `resume=True` continues from it. Options not given as
    `config` are `HealingConfig` fields (`tokens=32_768`, `lora=16`, ...).

    Example:

    ```python
    >>> import hf_prune
    >>> hf_prune.heal("runs/smollm2-block-influence", "runs/smollm2-healed", tokens=32_768)  # doctest: +SKIP
    ```
    """
    config = config or HealingConfig(**options)
    check_output_dir(output_dir, overwrite)
    state_dir = state_dir_for(output_dir)
    if resume and not (state_dir / STATE_FILE).is_file():
        raise HealingError(f"nothing to resume: no healing checkpoint in {state_dir}")
    loaded = load_model(checkpoint)
    if (Path(checkpoint) / RECORD_NAME).is_file():
        record = PruningRecord.load(checkpoint)
    elif teacher is None:
        raise HealingError(f"{checkpoint} has no {RECORD_NAME} naming its source model: give the teacher")
    else:
        record = PruningRecord.from_model(loaded.model, source_model=loaded.source)
    teacher_loaded = load_model(teacher if teacher is not None else teacher_name(record.source_model))
    check_teacher(loaded.model, teacher_loaded.model, loaded.tokenizer, teacher_loaded.tokenizer)
    windows, data_source = training_windows(loaded.tokenizer, config)
    if not resume and state_dir.exists():
        shutil.rmtree(state_dir)
    result = heal_model(
        loaded.model, teacher_loaded.model, windows, config, tokenizer=loaded.tokenizer, eval_text=load_text(config.eval_text, "evaluation"),
        state_dir=state_dir, resume=resume, progress=progress,
    )
    from ..calibration.distributed import is_main_process

    if not is_main_process():
        return record
    record = with_healing(record, result, teacher_loaded.source, data_source, config)
    if command:
        record.command = f"{record.command}\n{command}" if record.command else command
    extra_files = {CURVE_NAME: lambda final: curve_png(final.healing)} if result.facts["held_out"] else {}
    report = Path(checkpoint) / "report.md"
    if report.is_file():
        extra_files["report.md"] = report.read_text(encoding="utf-8") + "\n" + healing_report(record.healing)
    save_pruned(
        result.model, output_dir, format=record.format, tokenizer=loaded.tokenizer, record=record, overwrite=overwrite,
        extra_files=extra_files,
    )
    shutil.rmtree(state_dir, ignore_errors=True)
    return record


def healing_report(healing: dict) -> str:
    """The healing section appended to a checkpoint's `report.md`."""
    lines = [
        "## Healing", "",
        f"Distilled from {healing['teacher']} on {healing['tokens']:,} tokens of `{healing['data']['source']}` in "
        f"{healing['steps']} steps on {healing['processes']} process(es): {healing['wall_seconds']:.0f} s, "
        f"{healing['tokens_per_second']:,.0f} training tokens/s.", "",
        "| training tokens | held-out perplexity |", "|---:|---:|",
    ]
    lines += [f"| {point['tokens']:,} | {point['perplexity']:.3f} |" for point in healing["held_out"]]
    return "\n".join(lines) + "\n"


def with_healing(record: PruningRecord, result: HealingResult, teacher: str, data_source: str, config: HealingConfig):
    """`record` with its `healing` entry filled in from a finished run."""
    facts = dict(result.facts)
    facts["teacher"] = teacher
    facts["data"] = {"source": data_source, "seq_len": config.seq_len,
                     "tokens_sha256": facts.pop("training_windows_sha256")}
    record.healing = facts
    return record
