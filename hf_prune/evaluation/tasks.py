"""Zero-shot task accuracy through EleutherAI's lm-evaluation-harness, with task data from local files if asked.

lm-eval does the scoring: its own task configs (prompts, choices, preprocessing, metrics) and its own `HFLM`
wrapper around the model already in memory, stock or pruned format. Offline, `task_data` points each task at local
files in the Hugging Face schema through lm-eval's documented local-dataset configuration: a task config that
includes the built-in one and sets `dataset_path: json` with `dataset_kwargs.data_files`, so nothing but the data
source changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import MissingDependencyError, TaskDataError

DEFAULT_TASKS = ("arc_easy", "arc_challenge", "piqa", "boolq", "openbookqa", "lambada_openai")


@dataclass(frozen=True)
class TaskData:
    """Where a task's data lives: its built-in lm-eval config, its local files by split, and its Hub dataset."""

    config: str  # the built-in config, relative to lm_eval/tasks
    files: dict[str, str]  # split -> file name in the task-data directory; the first split is evaluated
    hub_dataset: str
    hub_config: str | None
    pretty_name: str

    @property
    def split(self) -> str:
        return next(iter(self.files))


# The file names follow <task>_<split>.jsonl (boolq's data is SuperGLUE's layout, winogrande's the xl config).
TASK_DATA = {
    "arc_easy": TaskData("arc/arc_easy.yaml", {"test": "arc_easy_test.jsonl"}, "allenai/ai2_arc", "ARC-Easy", "ARC-Easy"),
    "arc_challenge": TaskData(
        "arc/arc_challenge.yaml", {"test": "arc_challenge_test.jsonl"}, "allenai/ai2_arc", "ARC-Challenge", "ARC-Challenge"
    ),
    "piqa": TaskData("piqa/piqa.yaml", {"validation": "piqa_validation.jsonl"}, "baber/piqa", None, "PIQA"),
    "boolq": TaskData(
        "super_glue/boolq/default.yaml", {"validation": "boolq_superglue_validation.jsonl"}, "aps/super_glue", "boolq", "BoolQ"
    ),
    "openbookqa": TaskData(
        "openbookqa/openbookqa.yaml",
        {"test": "openbookqa_test.jsonl", "validation": "openbookqa_validation.jsonl"},
        "allenai/openbookqa",
        "main",
        "OpenBookQA",
    ),
    "lambada_openai": TaskData(
        "lambada/lambada_openai.yaml", {"test": "lambada_test.jsonl"}, "EleutherAI/lambada_openai", "default", "LAMBADA (OpenAI)"
    ),
    "hellaswag": TaskData("hellaswag/hellaswag.yaml", {"validation": "hellaswag_validation.jsonl"}, "Rowan/hellaswag", None, "HellaSwag"),
    "winogrande": TaskData(
        "winogrande/default.yaml", {"validation": "winogrande_xl_validation.jsonl"}, "allenai/winogrande", "winogrande_xl", "WinoGrande"
    ),
}
_SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}


def parse_tasks(value: str) -> list[str]:
    """`arc_easy,piqa` as a list; `default` is the six tasks the papers share (`DEFAULT_TASKS`)."""
    tasks = [name.strip() for name in value.split(",") if name.strip()]
    if tasks == ["default"]:
        return list(DEFAULT_TASKS)
    if not tasks:
        raise TaskDataError("--tasks is empty: give task names such as arc_easy,piqa (or default)")
    return tasks


def require_lm_eval():
    """lm-eval's module, or a one-line error saying what to install."""
    try:
        import lm_eval
    except ImportError:
        raise MissingDependencyError("task accuracy needs lm-evaluation-harness: pip install 'hf-prune[eval]'") from None
    return lm_eval


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_task_configs(tasks: list[str], task_data: str | os.PathLike, directory: str | os.PathLike) -> dict[str, str]:
    """Write, into `directory`, one lm-eval task config per task that includes the built-in config and reads the
    task's local files instead of the Hub; returns the SHA-256 of each file used, by file name.

    Raises `TaskDataError` naming the first missing file, or a task with no known local layout.

    Example:

    ```python
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hf_prune.evaluation.tasks import local_task_configs
    >>> data, configs = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (data / "piqa_validation.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\\n')
    >>> sorted(local_task_configs(["piqa"], data, configs))
    ['piqa_validation.jsonl']
    >>> local_task_configs(["arc_easy"], data, configs)
    Traceback (most recent call last):
    ...
    hf_prune.errors.TaskDataError: arc_easy needs arc_easy_test.jsonl in ..., which is missing

    ```
    """
    lm_eval = require_lm_eval()
    builtin = Path(lm_eval.__file__).parent / "tasks"
    task_data, directory = Path(task_data), Path(directory)
    if not task_data.is_dir():
        raise TaskDataError(f"--task-data {task_data} is not a directory")
    digests = {}
    for task in tasks:
        if task not in TASK_DATA:
            raise TaskDataError(f"no local data layout for task {task!r} (known: {', '.join(TASK_DATA)}); "
                                "run it without --task-data to let lm-eval download it")
        layout = TASK_DATA[task]
        files = {}
        for split, name in layout.files.items():
            path = task_data / name
            if path.is_file():
                files[split] = path
            elif split == layout.split:
                raise TaskDataError(f"{task} needs {name} in {task_data}, which is missing")
        lines = [f"include: {builtin / layout.config}", f"task: {task}", "dataset_path: json", "dataset_name: null",
                 "dataset_kwargs:", "  data_files:"]
        lines += [f"    {split}: {path.resolve()}" for split, path in files.items()]
        # Only the splits present exist; few-shot examples then come from the evaluated split itself (lm-eval's rule).
        lines += [f"{key}: {split if split in files else 'null'}" for split, key in _SPLIT_KEYS.items()]
        (directory / f"{task}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        digests.update({path.name: file_sha256(path) for path in files.values()})
    return digests


def headline_metric(scores: dict[str, Any]) -> str:
    """The metric papers quote for a task: length-normalised accuracy where the task has it, accuracy otherwise."""
    return "acc_norm" if "acc_norm" in scores else "acc"


def evaluate_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: list[str],
    *,
    task_data: str | os.PathLike | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 1,
    bootstrap_iters: int = 1000,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Zero-shot (or `num_fewshot`-shot) accuracy of `model` on lm-eval `tasks`, as lm-eval computes it.

    Returns `{"tasks": {task: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", ...}}, "settings": {...}}`,
    with lm-eval's standard errors, the number of items each task was scored on, and (with `task_data`) the SHA-256
    of every data file. `log_samples=True` adds lm-eval's per-item records under `"samples"`.

    Example:

    ```python
    >>> from hf_prune import load_model
    >>> from hf_prune.evaluation.tasks import evaluate_tasks
    >>> loaded = load_model("smollm2-135m")  # doctest: +SKIP
    >>> result = evaluate_tasks(loaded.model, loaded.tokenizer, ["arc_easy"], task_data="shared/data/tasks", limit=50)  # doctest: +SKIP
    >>> sorted(result["tasks"]["arc_easy"])  # doctest: +SKIP
    ['acc', 'acc_norm', 'acc_norm_stderr', 'acc_stderr', 'items']

    ```
    """
    lm_eval = require_lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if limit is not None and limit < 1:
        raise TaskDataError(f"--limit must be at least 1, got {limit}")
    with tempfile.TemporaryDirectory(prefix="hf-prune-tasks-") as directory:
        digests = local_task_configs(tasks, task_data, directory) if task_data is not None else None
        was_training = model.training
        model.eval()
        # lm-eval logs a warning for a model passed as an object, and notes every task overridden by a local config.
        quiet = [logging.getLogger(name) for name in ("lm_eval", "lm-eval")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            manager = TaskManager(include_path=directory) if task_data is not None else TaskManager()
            unknown = [task for task in tasks if task not in manager.all_tasks]
            if unknown:
                raise TaskDataError(f"lm-eval has no task named {', '.join(unknown)}")
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
            with contextlib.redirect_stdout(sys.stderr):  # lm-eval prints progress notes; stdout is for results
                output = lm_eval.simple_evaluate(
                    model=lm, tasks=list(tasks), num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                    bootstrap_iters=bootstrap_iters, log_samples=log_samples,
                )
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
            model.train(was_training)
    results = {}
    for task in tasks:
        raw = output["results"][task]
        scores = {}
        for key, value in raw.items():
            metric, _, filter_name = key.partition(",")
            if filter_name == "none" and isinstance(value, (int, float)):
                scores[metric] = float(value)
        scores["items"] = output["n-samples"][task]["effective"]
        results[task] = scores
    settings = {
        "lm_eval_version": output.get("lm_eval_version") or getattr(lm_eval, "__version__", None),
        "limit": limit,
        "num_fewshot": num_fewshot or 0,
        "batch_size": batch_size,
        "task_versions": {task: output["versions"].get(task) for task in tasks},
        "splits": {task: TASK_DATA[task].split for task in tasks if task in TASK_DATA},
        # The Hub datasets the scores are on, for the card's model-index (which knows no task layouts).
        "datasets": {task: {"type": TASK_DATA[task].hub_dataset, "name": TASK_DATA[task].pretty_name,
                            "config": TASK_DATA[task].hub_config} for task in tasks if task in TASK_DATA},
        "task_data": digests,
    }
    result = {"tasks": results, "settings": settings}
    if log_samples:
        result["samples"] = output["samples"]
    return result


def compare_tasks(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per task, each model's scores and the retention (model / the first one, on the headline metric), and the
    mean retention over tasks; `results` maps model names (`dense`, `pruned`, `healed`) to `evaluate_tasks` outputs.

    Example:

    ```python
    >>> from hf_prune.evaluation.tasks import compare_tasks
    >>> dense = {"tasks": {"piqa": {"acc": 0.6, "acc_norm": 0.64}}, "settings": {"limit": None}}
    >>> pruned = {"tasks": {"piqa": {"acc": 0.55, "acc_norm": 0.56}}, "settings": {"limit": None}}
    >>> comparison = compare_tasks({"dense": dense, "pruned": pruned})
    >>> round(comparison["tasks"]["piqa"]["retention"]["pruned"], 3), round(comparison["average_retention"]["pruned"], 3)
    (0.875, 0.875)

    ```
    """
    names = list(results)
    reference = results[names[0]]
    tasks = {}
    for task, scores in reference["tasks"].items():
        metric = headline_metric(scores)
        entry = {"metric": metric, **{name: results[name]["tasks"][task] for name in names}}
        entry["retention"] = {
            name: (results[name]["tasks"][task][metric] / scores[metric] if scores[metric] else None) for name in names[1:]
        }
        tasks[task] = entry
    average = {}
    for name in names[1:]:
        values = [entry["retention"][name] for entry in tasks.values() if entry["retention"][name] is not None]
        average[name] = sum(values) / len(values) if values else None
    return {"tasks": tasks, "average_retention": average, "settings": reference["settings"]}
