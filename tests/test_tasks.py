"""Zero-shot task accuracy through lm-evaluation-harness: real lm-eval runs on stories260k with local task data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hf_prune.errors import TaskDataError
from hf_prune.evaluation.tasks import compare_tasks, evaluate_tasks, local_task_configs, parse_tasks
from tests.conftest import SHARED, requires_shared

pytest.importorskip("lm_eval", reason="task accuracy needs lm-eval (hf-prune[eval])")

TASK_DATA = SHARED / "data" / "tasks"
STORIES_TEXT = SHARED / "data" / "tinystories_val_prefix.txt"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_prune", *map(str, args)], capture_output=True, text=True, timeout=900)


def direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context), computed plainly: the pair encoded whole, the context's tokens split off."""
    whole = tokenizer.encode(context + continuation)
    context_tokens = tokenizer.encode(context)
    input_ids = torch.tensor([whole])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids).logits[0].float(), dim=-1)
    return sum(log_probs[position - 1, whole[position]].item() for position in range(len(context_tokens), len(whole)))


@requires_shared
@pytest.mark.parametrize("task", ["arc_easy", "piqa"])
def test_lm_eval_accuracy_equals_a_direct_loglikelihood_comparison(stories260k, task):
    model, tokenizer = stories260k.model, stories260k.tokenizer
    result = evaluate_tasks(model, tokenizer, [task], task_data=TASK_DATA, limit=6, batch_size=3, log_samples=True)
    samples = result["samples"][task]
    assert len(samples) == 6 and result["tasks"][task]["items"] == 6
    correct = correct_norm = 0
    for sample in samples:
        doc = sample["doc"]
        if task == "arc_easy":
            context = f"Question: {doc['question']}\nAnswer:"
            choices = doc["choices"]["text"]
            gold = doc["choices"]["label"].index(doc["answerKey"])
        else:
            context, choices, gold = f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], int(doc["label"])
        scores = [direct_loglikelihood(model, tokenizer, context, " " + choice) for choice in choices]
        lm_eval_scores = [response[0][0] for response in sample["resps"]]
        assert scores == pytest.approx(lm_eval_scores, rel=1e-4, abs=1e-3)
        correct += max(range(len(scores)), key=scores.__getitem__) == gold
        normalised = [score / len(choice) for score, choice in zip(scores, choices)]
        correct_norm += max(range(len(scores)), key=normalised.__getitem__) == gold
    assert result["tasks"][task]["acc"] == pytest.approx(correct / 6)
    assert result["tasks"][task]["acc_norm"] == pytest.approx(correct_norm / 6)
    assert result["tasks"][task]["acc_stderr"] >= 0


@requires_shared
def test_eval_cli_runs_the_six_tasks_from_local_files(tmp_path):
    result = cli("eval", SHARED / "models" / "stories260k", "--tasks", "default", "--task-data", TASK_DATA,
                 "--limit", "4", "--batch-size", "4", "--json")
    assert result.returncode == 0, result.stderr
    accuracy = json.loads(result.stdout)["task_accuracy"]
    assert list(accuracy["tasks"]) == list(parse_tasks("default"))
    for task, scores in accuracy["tasks"].items():
        assert scores["items"] == 4 and 0 <= scores["acc"] <= 1 and "acc_stderr" in scores
        assert ("acc_norm" in scores) == (task not in ("boolq", "lambada_openai"))
    assert accuracy["settings"]["splits"]["piqa"] == "validation" and accuracy["settings"]["limit"] == 4
    assert len(accuracy["settings"]["task_data"]["lambada_test.jsonl"]) == 64


def test_hellaswag_and_winogrande_read_local_files_by_the_same_convention(tmp_path, stories260k):
    model, tokenizer = stories260k.model, stories260k.tokenizer
    (tmp_path / "hellaswag_validation.jsonl").write_text("\n".join(json.dumps(item) for item in [
        {"ind": 1, "activity_label": "Cooking", "ctx_a": "A man cracks an egg into a bowl.", "ctx_b": "he",
         "ctx": "A man cracks an egg into a bowl. he", "endings": ["whisks it with a fork.", "paints the wall.",
                                                                  "drives away.", "sings to the egg."],
         "source_id": "test", "split": "val", "split_type": "indomain", "label": "0"},
        {"ind": 2, "activity_label": "Running", "ctx_a": "A girl ties her shoes.", "ctx_b": "she",
         "ctx": "A girl ties her shoes. she", "endings": ["runs down the road.", "eats the shoes.", "flies.", "melts."],
         "source_id": "test", "split": "val", "split_type": "indomain", "label": "0"},
    ]) + "\n")
    (tmp_path / "winogrande_xl_validation.jsonl").write_text("\n".join(json.dumps(item) for item in [
        {"sentence": "The cup did not fit in the box because the _ was too big.", "option1": "cup", "option2": "box", "answer": "1"},
        {"sentence": "Tom gave Ann a book because _ had finished reading it.", "option1": "Tom", "option2": "Ann", "answer": "1"},
    ]) + "\n")
    result = evaluate_tasks(model, tokenizer, ["hellaswag", "winogrande"], task_data=tmp_path, batch_size=2)
    assert result["tasks"]["hellaswag"]["items"] == 2 and "acc_norm" in result["tasks"]["hellaswag"]
    assert result["tasks"]["winogrande"]["items"] == 2 and "acc" in result["tasks"]["winogrande"]


def test_a_missing_task_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(TaskDataError, match=r"^arc_easy needs arc_easy_test.jsonl in .*, which is missing$"):
        local_task_configs(["arc_easy"], tmp_path, tmp_path)
    result = cli("prune", "smollm2-135m", "--method", "block-influence", "--num-layers", "1", "--tasks", "piqa",
                 "--task-data", tmp_path, "--output", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"hf-prune: error: piqa needs piqa_validation.jsonl in {tmp_path}, which is missing"]
    assert not (tmp_path / "out").exists()


def test_unknown_tasks_and_bad_limits_are_refused(tmp_path):
    with pytest.raises(TaskDataError, match="no local data layout for task 'mmlu'"):
        local_task_configs(["mmlu"], tmp_path, tmp_path)
    with pytest.raises(TaskDataError, match="--tasks is empty"):
        parse_tasks(" , ")


def test_retention_is_each_model_over_the_first_on_the_headline_metric():
    def scores(**tasks):
        return {"tasks": tasks, "settings": {"limit": None}}

    comparison = compare_tasks({
        "dense": scores(piqa={"acc": 0.6, "acc_norm": 0.8}, boolq={"acc": 0.5}),
        "pruned": scores(piqa={"acc": 0.5, "acc_norm": 0.6}, boolq={"acc": 0.6}),
        "healed": scores(piqa={"acc": 0.6, "acc_norm": 0.7}, boolq={"acc": 0.55}),
    })
    assert comparison["tasks"]["piqa"]["metric"] == "acc_norm" and comparison["tasks"]["boolq"]["metric"] == "acc"
    assert comparison["tasks"]["piqa"]["retention"] == {"pruned": pytest.approx(0.75), "healed": pytest.approx(0.875)}
    assert comparison["average_retention"]["pruned"] == pytest.approx((0.75 + 1.2) / 2)


@requires_shared
def test_prune_with_tasks_records_dense_pruned_and_healed_and_fills_the_model_index(tmp_path):
    result = cli("prune", SHARED / "models" / "stories260k", "--method", "block-influence", "--num-layers", "1",
                 "--calibration", STORIES_TEXT, "--seq-len", "64", "--num-samples", "8", "--tasks", "piqa,arc_easy",
                 "--task-data", TASK_DATA, "--limit", "8", "--task-batch-size", "4", "--heal-tokens", "1024",
                 "--heal-seq-len", "64", "--heal-data", STORIES_TEXT, "--quiet", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "task accuracy retained (healed / dense, mean over 2 tasks)" in result.stdout
    tasks = json.loads((tmp_path / "out" / "pruning.json").read_text())["evaluation"]["tasks"]
    piqa = tasks["tasks"]["piqa"]
    assert piqa["metric"] == "acc_norm" and set(piqa["retention"]) == {"pruned", "healed"}
    assert piqa["retention"]["healed"] == pytest.approx(piqa["healed"]["acc_norm"] / piqa["dense"]["acc_norm"])
    card = (tmp_path / "out" / "README.md").read_text()
    from huggingface_hub import ModelCard

    results = ModelCard(card).data.eval_results
    arc = [r for r in results if r.dataset_name == "ARC-Easy" and r.metric_type == "acc_norm"]
    assert arc and arc[0].dataset_split == "test" and arc[0].metric_value == round(tasks["tasks"]["arc_easy"]["healed"]["acc_norm"], 4)
    assert "## Task accuracy" in card and "| piqa | acc_norm | 8 |" in card
    assert "## Task accuracy" in (tmp_path / "out" / "report.md").read_text()
