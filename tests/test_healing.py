"""Healing: the distillation loss, real healing of a pruned model, formats kept, LoRA, resume, processes, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import hf_prune
from hf_prune.errors import HealingError
from hf_prune.healing import HealingConfig, heal, heal_model
from hf_prune.healing.trainer import DistillationStudent, LayerOutputs, intermediate_loss
from hf_prune.provenance import PruningRecord
from tests.conftest import SHARED, heterogeneous, make_tiny_model, requires_shared
from tests.helpers import logits_in_fresh_process

STORIES_TEXT = SHARED / "data" / "tinystories_val_prefix.txt"
SMALL = dict(seq_len=64, batch_size=4, data=str(STORIES_TEXT), eval_text=str(STORIES_TEXT), eval_windows=4, lr=1e-3)


def cli(*args, env=None, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "hf_prune", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def reference_loss(student, teacher, input_ids, loss: str, temperature: float) -> torch.Tensor:
    """The same loss from full logits, written plainly."""
    logits = student(input_ids).logits[:, :-1].flatten(0, 1).float()
    terms = []
    if loss in ("kd", "kd+ce"):
        teacher_probs = torch.softmax(teacher(input_ids).logits[:, :-1].flatten(0, 1).float() / temperature, -1)
        student_log_probs = torch.log_softmax(logits / temperature, -1)
        per_token = (teacher_probs * (teacher_probs.log() - student_log_probs)).sum(-1)
        terms.append(per_token.mean() * temperature**2)
    if loss in ("ce", "kd+ce"):
        terms.append(torch.nn.functional.cross_entropy(logits, input_ids[:, 1:].flatten()))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("loss", ["kd", "ce", "kd+ce"])
def test_chunked_loss_and_gradients_equal_the_full_logits_ones(loss):
    teacher = make_tiny_model("llama", seed=1).eval()
    student = heterogeneous(make_tiny_model("llama", seed=1))
    input_ids = torch.randint(1, 96, (3, 11), generator=torch.Generator().manual_seed(0))
    config = HealingConfig(steps=1, seq_len=11, loss=loss, temperature=2.0, logits_chunk=7)  # chunks cross rows
    with torch.no_grad():
        teacher_hidden = teacher.get_decoder()(input_ids=input_ids).last_hidden_state
    chunked = DistillationStudent(student, config)(input_ids, teacher_hidden, teacher.get_output_embeddings())
    chunked.backward()
    chunked_grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    expected = reference_loss(student, teacher, input_ids, loss, 2.0)
    expected.backward()
    assert torch.allclose(chunked, expected, rtol=1e-5)
    for got, want in zip(chunked_grads, (p.grad for p in student.parameters())):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), (got - want).abs().max()


def test_intermediate_states_pull_each_layer_towards_the_teacher_layer_it_came_from(family):
    teacher = make_tiny_model(family, seed=1).eval()
    student = hf_prune.remove_layers(teacher, [1])
    input_ids = torch.randint(1, 96, (4, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), LayerOutputs(teacher.get_decoder(), [3, 0, 2]) as taught:
        reference = teacher.get_decoder()(input_ids=input_ids, output_hidden_states=True)
    # What a layer returns, in the order asked for (hidden_states[i + 1] is layer i's output below the last layer).
    assert torch.equal(taught.outputs[1], reference.hidden_states[1])
    assert torch.equal(taught.outputs[2], reference.hidden_states[3])

    targets = [taught.outputs[1], taught.outputs[2], taught.outputs[0]]  # teacher layers 0, 2 and 3

    def distances(model):
        with torch.no_grad(), LayerOutputs(model.get_decoder(), range(3)) as own:
            model.get_decoder()(input_ids=input_ids)
        return [intermediate_loss([mine], [target]).item() for mine, target in zip(own.outputs, targets)]

    before = distances(student)
    assert before[0] == 0 and before[1] > 0 and before[2] > 0  # layer 0 is untouched; the others lost their input

    # The loss is the distillation loss plus the weighted intermediate one.
    config = HealingConfig(steps=1, seq_len=16, intermediate_weight=0.5)
    with torch.no_grad():
        plain = DistillationStudent(student, config)(input_ids, reference.last_hidden_state, teacher.get_output_embeddings())
        combined = DistillationStudent(student, config)(input_ids, reference.last_hidden_state,
                                                        teacher.get_output_embeddings(), targets)
    assert combined.item() == pytest.approx(plain.item() + 0.5 * sum(before) / 3, rel=1e-5)

    # Trained on that one batch, the layers move towards their teacher layers with the loss on, and not without it.
    healed = {}
    for weight in (0.0, 10.0):
        config = HealingConfig(steps=8, seq_len=16, batch_size=4, lr=1e-2, warmup=0, schedule="constant",
                               intermediate_weight=weight)
        result = heal_model(student, teacher, input_ids, config, progress=False)
        healed[weight] = sum(distances(result.model))
    assert result.facts["intermediate_source_layers"] == [0, 2, 3]
    assert healed[10.0] < 0.5 * sum(before) and healed[10.0] < 0.5 * healed[0.0]


def test_intermediate_states_need_a_teacher_and_a_source_layer_for_every_layer():
    teacher = make_tiny_model("llama")
    windows = torch.randint(1, 96, (8, 16))
    config = HealingConfig(steps=1, seq_len=16, batch_size=4, intermediate_weight=1.0)
    with pytest.raises(HealingError, match="needs the source layer of each of the student's 4 layers"):
        heal_model(make_tiny_model("llama"), teacher, windows, config, source_layers=[0, 1, 2], progress=False)
    with pytest.raises(HealingError, match="intermediate-state loss compares layers with a teacher's"):
        heal_model(make_tiny_model("llama"), None, windows, HealingConfig(steps=1, seq_len=16, loss="ce",
                                                                         intermediate_weight=1.0), progress=False)


def test_heal_from_disk_pulls_layers_towards_the_source_layers_pruning_json_names(tiny_checkpoint, tmp_path):
    loaded = hf_prune.load_model(tiny_checkpoint)
    pruned = hf_prune.remove_layers(loaded.model, [1])
    record = PruningRecord.from_model(pruned, source_model=str(tiny_checkpoint))
    hf_prune.save_pruned(pruned, tmp_path / "pruned", tokenizer=loaded.tokenizer, record=record)
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"word{i % 37} and then {i}" for i in range(3000)))
    result = cli("heal", tmp_path / "pruned", "--output", tmp_path / "healed", "--steps", "2", "--seq-len", "16",
                 "--data", text, "--eval-text", text, "--intermediate-weight", "0.5", "--quiet")
    assert result.returncode == 0, result.stderr
    healing = json.loads((tmp_path / "healed" / "pruning.json").read_text())["healing"]
    # Read back, the model's own trace is gone: the layer map must come from pruning.json, not the identity.
    assert healing["intermediate_source_layers"] == [0, 2, 3] and healing["config"]["intermediate_weight"] == 0.5
    assert "plus 0.5 x the\nintermediate-state loss" in (tmp_path / "healed" / "README.md").read_text()


def test_teacher_with_another_vocabulary_is_refused():
    teacher = make_tiny_model("llama")
    teacher.resize_token_embeddings(128)
    windows = torch.randint(1, 96, (8, 16))
    with pytest.raises(HealingError, match="teacher's vocabulary has 128 entries and the student's 96"):
        heal_model(make_tiny_model("llama"), teacher, windows, HealingConfig(steps=1, seq_len=16), progress=False)


def test_data_too_short_for_one_batch_is_refused():
    windows = torch.randint(1, 96, (3, 16))
    with pytest.raises(HealingError, match="gives 3 windows of 16 tokens, fewer than one batch"):
        heal_model(make_tiny_model("llama"), make_tiny_model("llama"), windows,
                   HealingConfig(steps=1, seq_len=16, batch_size=4), progress=False)


def test_a_loss_that_is_not_finite_stops_with_one_line():
    windows = torch.randint(1, 96, (8, 16))
    with pytest.raises(HealingError, match=r"the healing loss became (nan|inf) at step \d"):
        heal_model(make_tiny_model("llama"), make_tiny_model("llama", seed=3), windows,
                   HealingConfig(steps=4, seq_len=16, batch_size=2, lr=1e30, max_grad_norm=0, warmup=0), progress=False)


def test_budget_must_be_tokens_or_steps():
    with pytest.raises(HealingError, match="tokens or as steps"):
        HealingConfig()

def test_a_bfloat16_teacher_leaves_the_callers_teacher_alone_and_distils_like_float32():
    teacher = make_tiny_model("llama", seed=3)
    before = {name: tensor.clone() for name, tensor in teacher.state_dict().items()}
    windows = torch.randint(1, 96, (8, 16), generator=torch.Generator().manual_seed(0))
    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = HealingConfig(steps=2, seq_len=16, batch_size=4, teacher_dtype=dtype)
        result = heal_model(make_tiny_model("llama"), teacher, windows, config, progress=False)
        assert result.facts["teacher_dtype"] == dtype
        losses[dtype] = [point["loss"] for point in result.facts["loss_curve"]]
    assert teacher.dtype == torch.float32
    assert all(torch.equal(before[name], tensor) for name, tensor in teacher.state_dict().items())
    # bfloat16 keeps 8 bits of mantissa: the teacher's distribution, and so the loss, moves by well under 1%.
    assert losses["bfloat16"] != losses["float32"]
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=1e-2)



@requires_shared
def test_healing_a_pruned_stories260k_lowers_held_out_perplexity_and_keeps_stock_format(tmp_path):
    pruned = tmp_path / "pruned"
    assert cli("prune", SHARED / "models" / "stories260k", "--method", "block-influence", "--num-layers", "1",
               "--calibration", STORIES_TEXT, "--seq-len", "64", "--num-samples", "8", "--quiet", "--output",
               pruned).returncode == 0
    result = cli("heal", pruned, "--output", tmp_path / "healed", "--tokens", "8192", "--seq-len", "64",
                 "--data", STORIES_TEXT, "--eval-text", STORIES_TEXT, "--lr", "1e-3", "--quiet")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "healed" / "pruning.json").read_text())
    healing = record["healing"]
    assert record["format"] == "stock" and record["method"] == "block-influence"
    assert healing["teacher"].endswith("stories260k") and healing["steps"] == 32 and healing["tokens"] == 8192
    assert healing["held_out_perplexity_after"] < 0.8 * healing["held_out_perplexity_before"]
    assert len(healing["loss_curve"]) == 32 and len(healing["data"]["tokens_sha256"]) == 64
    card = (tmp_path / "healed" / "README.md").read_text()
    assert "## Healing" in card and "healing_curve.png" in card and "- healed" in card
    assert (tmp_path / "healed" / "healing_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Healing" in (tmp_path / "healed" / "report.md").read_text()
    assert not (tmp_path / "healed.healing").exists()
    # The weights changed, the shapes did not, and the result loads as an ordinary Llama.
    before, after = load_file(pruned / "model.safetensors"), load_file(tmp_path / "healed" / "model.safetensors")
    assert before.keys() == after.keys() and all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "healed")).__name__ == "LlamaForCausalLM"


@requires_shared
def test_transact_heals_between_its_shots_and_the_next_shot_scores_the_healed_model(tmp_path):
    result = cli("prune", SHARED / "models" / "stories260k", "--method", "transact", "--shots", "3", "--ratio", "0.5",
                 "--gqa", "heads", "--calibration", STORIES_TEXT, "--seq-len", "64", "--num-samples", "8",
                 "--heal-tokens-per-shot", "4096", "--heal-seq-len", "64", "--heal-data", STORIES_TEXT,
                 "--heal-eval-text", STORIES_TEXT, "--heal-lr", "1e-3", "--heal-tokens", "1024", "--quiet",
                 "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "healed between shots: 2 x 4,096 tokens" in result.stdout and "healed on 1,024 tokens" in result.stdout
    record = json.loads((tmp_path / "out" / "pruning.json").read_text())
    shot_healing = record["scores"]["shot_healing"]
    assert [run["shot"] for run in shot_healing["shots"]] == [1, 2] and record["healing"]["tokens"] == 1024
    for run in shot_healing["shots"]:
        assert run["tokens"] == 4096 and run["held_out_perplexity_after"] < run["held_out_perplexity_before"]
    # The healed models went on: the output's embeddings (never pruned by width) are no longer the source's.
    source = load_file(SHARED / "models" / "stories260k" / "model.safetensors")
    output = load_file(tmp_path / "out" / "model.safetensors")
    assert not torch.equal(source["model.embed_tokens.weight"], output["model.embed_tokens.weight"])
    assert len(record["scores"]["shot_plans"]) == 3
    card = (tmp_path / "out" / "README.md").read_text()
    assert "healed 2 times by distillation" in card and "- healed" in card


def test_healing_between_shots_needs_an_iterative_method(tmp_path):
    result = cli("prune", "missing-model", "--method", "block-influence", "--num-layers", "1",
                 "--heal-tokens-per-shot", "512", "--output", tmp_path / "out")
    assert result.returncode != 0 and "use --method transact with --shots 2 or more" in result.stderr
    assert not (tmp_path / "out").exists()


@requires_shared
def test_lora_healing_of_a_pruned_format_checkpoint_stays_pruned_format(stories260k, tmp_path):
    model = hf_prune.apply_plan(stories260k.model, hf_prune.PruningPlan(heads={1: [0, 1, 4, 5]}, neurons={2: list(range(64))}))
    hf_prune.save_pruned(model, tmp_path / "pruned", tokenizer=stories260k.tokenizer,
                         record=hf_prune.PruningRecord.from_model(model, source_model=str(SHARED / "models" / "stories260k")))
    record = heal(tmp_path / "pruned", tmp_path / "healed", tokens=4096, lora=4, progress=False, **SMALL)
    assert record.format == "pruned" and record.healing["lora_rank"] == 4
    assert record.healing["held_out_perplexity_after"] < record.healing["held_out_perplexity_before"]
    state = load_file(tmp_path / "healed" / "model.safetensors")
    assert not any("lora" in name for name in state)  # merged into the weights
    input_ids = stories260k.tokenizer("Once upon a time", return_tensors="pt").input_ids
    healed = hf_prune.load_model(str(tmp_path / "healed")).model
    with torch.no_grad():
        expected = healed(input_ids).logits
    remote, facts = logits_in_fresh_process(tmp_path / "healed", input_ids, tmp_path, trust_remote_code=True)
    assert torch.allclose(remote, expected, atol=1e-5) and not facts["hf_prune_imported"]


@requires_shared
def test_ctrl_c_leaves_no_output_and_resume_continues_exactly(stories260k, tmp_path):
    model = hf_prune.remove_layers(stories260k.model, [3])
    hf_prune.save_pruned(model, tmp_path / "pruned", tokenizer=stories260k.tokenizer,
                         record=hf_prune.PruningRecord.from_model(model, source_model=str(SHARED / "models" / "stories260k")))
    options = dict(steps=40, save_every=2, **SMALL)
    heal(tmp_path / "pruned", tmp_path / "straight", progress=False, **options)

    command = [sys.executable, "-m", "hf_prune", "heal", tmp_path / "pruned", "--output", tmp_path / "resumed",
               "--steps", "40", "--save-every", "2", "--seq-len", "64", "--batch-size", "4", "--data", STORIES_TEXT,
               "--eval-text", STORIES_TEXT, "--lr", "1e-3", "--quiet"]
    process = subprocess.Popen(list(map(str, command)), stderr=subprocess.PIPE, text=True)
    state = tmp_path / "resumed.healing" / "healing_state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "hf-prune: interrupted"
    assert not (tmp_path / "resumed").exists()
    saved = json.loads(state.read_text())["step"]
    assert 2 <= saved < 40

    record = heal(tmp_path / "pruned", tmp_path / "resumed", resume=True, progress=False, **options)
    assert record.healing["resumed_from_step"] == saved
    straight, resumed = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], atol=1e-6), name
    assert not (tmp_path / "resumed.healing").exists()


def test_resume_without_a_checkpoint_is_refused(tiny_checkpoint, tmp_path):
    result = cli("heal", tiny_checkpoint, "--output", tmp_path / "out", "--teacher", tiny_checkpoint, "--steps", "2",
                 "--resume")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "nothing to resume" in result.stderr and not (tmp_path / "out").exists()


def test_two_processes_with_half_the_batch_train_like_one(tiny_checkpoint, tmp_path):
    pruned = tmp_path / "pruned"
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"word{i % 37} and then {i}" for i in range(3000)))
    assert cli("prune", tiny_checkpoint, "--method", "last-layers", "--num-layers", "1", "--quiet", "--output",
               pruned).returncode == 0
    common = ["--steps", "3", "--seq-len", "16", "--data", text, "--eval-text", text, "--lr", "1e-2", "--quiet"]
    one = cli("heal", pruned, "--output", tmp_path / "one", "--batch-size", "4", *common)
    two = cli("heal", pruned, "--output", tmp_path / "two", "--batch-size", "2", *common, processes=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    base = load_file(pruned / "model.safetensors")
    records = [json.loads((tmp_path / d / "pruning.json").read_text())["healing"] for d in ("one", "two")]
    # The same run: the loss of every step and the held-out perplexity agree to float32 summation order ...
    for one_step, two_step in zip(records[0]["loss_curve"], records[1]["loss_curve"], strict=True):
        assert two_step["loss"] == pytest.approx(one_step["loss"], rel=1e-5)
    assert records[1]["held_out_perplexity_after"] == pytest.approx(records[0]["held_out_perplexity_after"], rel=1e-4)
    # ... and so do the weights: 99% of every tensor's entries to 1e-4 of how far training moved the tensor, all of
    # them to 1e-2 (AdamW divides by the root of tiny second moments, which magnifies summation-order noise).
    for name in a:
        moved = max((a[name] - base[name]).abs().max().item(), 1e-3)
        difference = (a[name] - b[name]).abs().flatten()
        assert difference.quantile(0.99).item() <= 1e-4 * moved, name
        assert difference.max().item() <= 1e-2 * moved, name
    assert records[0]["processes"] == 1 and records[1]["processes"] == 2
    assert records[0]["tokens"] == records[1]["tokens"] == 3 * 4 * 16
