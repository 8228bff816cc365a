"""`heal`: a pruned checkpoint in, a healed checkpoint out, in the same format, with its provenance."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..calibration.data import load_calibration, load_text, tokens_sha256
from ..checkpoint import load_model, save_pruned
from ..checkpoint.load import BUILTIN_MODELS
from ..checkpoint.save import check_output_dir
from ..errors import HealingError
from ..provenance import CURVE_NAME, RECORD_NAME, PruningRecord, healing_curve_png, healing_report
from .config import HealingConfig
from .trainer import STATE_FILE, HealingResult, check_teacher, heal_model, teacher_dtype


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
    >>> import tempfile
    >>> import hf_prune
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.checkpoint import load_tokenizer
    >>> from hf_prune.provenance import PruningRecord
    >>> runs, tokenizer = tempfile.mkdtemp(), load_tokenizer("smollm2-135m")
    >>> teacher = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
    ...                                        num_hidden_layers=3, num_attention_heads=4))
    >>> teacher.save_pretrained(f"{runs}/teacher")
    >>> _ = tokenizer.save_pretrained(f"{runs}/teacher")
    >>> pruned = hf_prune.remove_layers(teacher, [1])
    >>> record = PruningRecord.from_model(pruned, source_model=f"{runs}/teacher")  # names the teacher
    >>> _ = hf_prune.save_pruned(pruned, f"{runs}/pruned", tokenizer=tokenizer, record=record)
    >>> healed = hf_prune.heal(f"{runs}/pruned", f"{runs}/healed", steps=2, seq_len=32, batch_size=2, eval_windows=1,
    ...                        progress=False)
    >>> healed.healing["steps"], healed.healing["teacher"] == f"{runs}/teacher"
    (2, True)

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
    # Converted here, where nothing else holds the teacher, rather than copied by heal_model.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher_loaded.model.to(teacher_dtype(config, teacher_loaded.model, device))
    windows, data_source = training_windows(loaded.tokenizer, config)
    if not resume and state_dir.exists():
        shutil.rmtree(state_dir)
    result = heal_model(
        loaded.model, teacher_loaded.model, windows, config, tokenizer=loaded.tokenizer, eval_text=load_text(config.eval_text, "evaluation"),
        state_dir=state_dir, resume=resume, progress=progress,
        # A checkpoint read from disk has lost its trace; its record still says where each layer came from.
        source_layers=[layer["source_layer"] for layer in record.per_layer],
    )
    from ..calibration.distributed import is_main_process

    if not is_main_process():
        return record
    record = with_healing(record, result, teacher_loaded.source, data_source, config)
    if command:
        record.command = f"{record.command}\n{command}" if record.command else command
    extra_files = {CURVE_NAME: lambda final: healing_curve_png(final.healing)} if result.facts["held_out"] else {}
    report = Path(checkpoint) / "report.md"
    if report.is_file():
        extra_files["report.md"] = report.read_text(encoding="utf-8") + "\n" + healing_report(record.healing)
    save_pruned(
        result.model, output_dir, format=record.format, tokenizer=loaded.tokenizer, record=record, overwrite=overwrite,
        extra_files=extra_files,
    )
    shutil.rmtree(state_dir, ignore_errors=True)
    return record


def with_healing(record: PruningRecord, result: HealingResult, teacher: str, data_source: str, config: HealingConfig):
    """`record` with its `healing` entry filled in from a finished run."""
    facts = dict(result.facts)
    facts["teacher"] = teacher
    facts["data"] = {"source": data_source, "seq_len": config.seq_len,
                     "tokens_sha256": facts.pop("training_windows_sha256")}
    record.healing = facts
    return record


class ShotHealer:
    """Heals between an iterative method's pruning shots (`between_shots`), as TransAct's reference trains there.

    Each call distils the model just pruned from `teacher` on `config`'s budget (the window order is seeded with the
    shot, so shots see different windows) and returns the healed model, which the next shot then scores. `runs`
    keeps what each heal did, for `pruning.json`.

    Example:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.healing import HealingConfig, ShotHealer
    >>> from hf_prune.scoring import PruningTarget, TransActConfig, build_method
    >>> from hf_prune.calibration import CalibrationData
    >>> config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                      num_attention_heads=4, num_key_value_heads=2)
    >>> teacher = LlamaForCausalLM(config).eval()
    >>> windows = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))
    >>> healer = ShotHealer(teacher, windows, HealingConfig(steps=2, seq_len=16, batch_size=2), progress=False)
    >>> data = CalibrationData(windows[:2], source="random tokens")
    >>> method = build_method(TransActConfig(shots=3, gqa="heads"))
    >>> result = method.prune(teacher, data, PruningTarget(ratio=0.5), progress=False, between_shots=healer)
    >>> [run["shot"] for run in healer.runs]
    [1, 2]

    ```
    """

    def __init__(self, teacher, windows, config: HealingConfig, *, tokenizer=None, eval_text=None, progress: bool = True):
        self.teacher, self.windows, self.config = teacher, windows, config
        self.tokenizer, self.eval_text, self.progress = tokenizer, eval_text, progress
        self.runs: list[dict[str, Any]] = []

    def __call__(self, model, shot: int):
        config = dataclasses.replace(self.config, seed=self.config.seed + shot)
        result = heal_model(
            model, self.teacher, self.windows, config, tokenizer=self.tokenizer, eval_text=self.eval_text,
            progress=self.progress,
        )
        keep = ("steps", "tokens", "held_out_perplexity_before", "held_out_perplexity_after", "wall_seconds",
                "tokens_per_second")
        self.runs.append({"shot": shot, **{key: result.facts[key] for key in keep}})
        return result.model

    def provenance(self, teacher: str, data_source: str) -> dict[str, Any]:
        """What goes into the record: the teacher, the data, the settings and one entry per heal."""
        return {"teacher": teacher, "data": {"source": data_source, "seq_len": self.config.seq_len,
                                             "tokens_sha256": tokens_sha256(self.windows)},
                "config": self.config.to_dict(), "shots": self.runs}
