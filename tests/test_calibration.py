"""Calibration text and windows: sources, determinism, BOS handling, provenance, bad input, and the engine."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import hf_prune
from hf_prune.calibration import (
    CalibrationData,
    Statistic,
    builtin_text,
    collect,
    load_calibration,
    load_text,
    token_windows,
    tokens_of,
)
from hf_prune.errors import CalibrationError
from tests.conftest import make_tiny_model, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


def test_builtin_text_is_offline_english_with_disjoint_splits():
    calibration, evaluation = builtin_text("calibration"), builtin_text("evaluation")
    assert len(calibration) > 300_000 and len(evaluation) > 50_000
    assert "statement" in calibration and "the" in evaluation.split()
    assert evaluation[:200] not in calibration


def test_first_windows_are_consecutive_and_deterministic(tokenizer, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(builtin_text("evaluation"), encoding="utf-8")
    data = load_calibration(tokenizer, path, num_samples=5, seq_len=32)
    again = load_calibration(tokenizer, str(path), num_samples=5, seq_len=32)
    ids = tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False).input_ids
    assert data.input_ids.tolist() == [ids[i * 32 : (i + 1) * 32] for i in range(5)]
    assert data.tokens_sha256 == again.tokens_sha256
    expected = hashlib.sha256(torch.tensor([ids[: 5 * 32]]).numpy().astype("<i8").tobytes()).hexdigest()
    assert data.tokens_sha256 == expected
    assert data.provenance() == {
        "source": str(path),
        "num_samples": 5,
        "seq_len": 32,
        "tokens_sha256": expected,
        "seed": None,
        "bos": False,
    }


def test_seeded_windows_are_reproducible_and_different(tokenizer):
    first = load_calibration(tokenizer, num_samples=4, seq_len=16, seed=1)
    again = load_calibration(tokenizer, num_samples=4, seq_len=16, seed=1)
    other = load_calibration(tokenizer, num_samples=4, seq_len=16, seed=2)
    assert torch.equal(first.input_ids, again.input_ids)
    assert not torch.equal(first.input_ids, other.input_ids)
    assert first.provenance()["seed"] == 1


def test_bos_starts_every_window_when_the_tokenizer_adds_it():
    windows = token_windows(list(range(100, 120)), 5, bos_token_id=1, num_windows=3)
    assert windows.tolist() == [[1, 100, 101, 102, 103], [1, 104, 105, 106, 107], [1, 108, 109, 110, 111]]


def test_jsonl_uses_the_text_field(tokenizer, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"Document {i}: " + "words " * 40}) for i in range(3)) + "\n")
    assert load_text(path).text.startswith("Document 0:")
    assert load_calibration(tokenizer, path, num_samples=2, seq_len=16).num_samples == 2
    path.write_text('{"body": "no text field"}\n')
    with pytest.raises(CalibrationError, match=r"docs.jsonl:1: every line needs a string field \"text\""):
        load_text(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("   \n\n  ", "is empty"),
        ("only a few words here", r"fewer than one window|windows of 64, fewer than the 8 asked for"),
    ],
)
def test_unusable_calibration_text_is_refused(tokenizer, tmp_path, content, message):
    path = tmp_path / "text.txt"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=message):
        load_calibration(tokenizer, path, num_samples=8, seq_len=64)


def test_missing_source_names_the_alternatives():
    with pytest.raises(CalibrationError, match="is not a file nor one of: builtin, builtin-eval, wikitext2, c4, pg19"):
        load_text("no/such/file.txt")


class TokenCount(Statistic):
    """Counts the tokens each decoder layer sees, and sums their hidden states."""

    def targets(self, model):
        return {str(i): layer for i, layer in enumerate(model.base_model.layers)}

    def update(self, key, inputs, output, mask, batch_index):
        tokens = tokens_of(inputs, mask)
        self.add(f"tokens.{key}", torch.tensor(float(tokens.shape[0])))
        self.add(f"sum.{key}", tokens.sum(0))


def test_engine_masks_padding_and_batches_consistently():
    model = hf_prune.to_pruned(make_tiny_model("llama"))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 96, (4, 10), generator=generator)
    full = TokenCount()
    collect(model, CalibrationData(ids, "test"), [full], batch_size=4, progress=False)
    # The same windows, right-padded with garbage that the mask must exclude, in batches of 3.
    padded_ids = torch.cat([ids, torch.randint(1, 96, (4, 3), generator=generator)], dim=1)
    mask = torch.cat([torch.ones(4, 10), torch.zeros(4, 3)], dim=1).long()
    padded = TokenCount()
    collect(model, CalibrationData(padded_ids, "test", attention_mask=mask), [padded], batch_size=3, progress=False)
    assert padded.sums["tokens.0"].item() == 40 == full.sums["tokens.0"].item()
    for layer in range(4):
        # Equal up to float32 rounding: with a padding mask, attention runs an explicit-mask kernel instead of the
        # causal one. Counting a single padded position would change the sums by whole units.
        torch.testing.assert_close(padded.sums[f"sum.{layer}"], full.sums[f"sum.{layer}"], rtol=1e-4, atol=1e-4)
    assert all(tensor.dtype == torch.float64 for tensor in full.sums.values())


def test_engine_removes_its_hooks_even_on_failure():
    model = hf_prune.to_pruned(make_tiny_model("llama"))

    class Exploding(TokenCount):
        def update(self, *args):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        collect(model, CalibrationData(torch.ones(1, 4, dtype=torch.long), "t"), [Exploding()], progress=False)
    assert all(not layer._forward_hooks for layer in model.base_model.layers)
