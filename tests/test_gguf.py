"""GGUF export: the file's metadata and refusals with the gguf package, and greedy tokens in the real llama.cpp.

The runtime tests load the exported files in llama.cpp through llama-cpp-python (built from source by pip; the README's
test command installs it) and compare greedy tokens, decoded one at a time through llama.cpp's KV cache, with
transformers' on the same token ids.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import hf_prune
from hf_prune.architecture.gguf_layout import ZERO_MLP_WIDTH
from hf_prune.errors import FormatError, LlamaCppError, OutputExistsError
from hf_prune.export.gguf import export_gguf, llama_cpp_greedy
from tests.conftest import (
    TINY_SIZES,
    heterogeneous,
    make_tiny_model,
    randomize,
    requires_gemma3,
    requires_shared,
    requires_smollm2,
    train_tokenizer,
)
from tests.test_cli import hf_prune as hf_prune_cli

gguf = pytest.importorskip("gguf", reason="GGUF export needs the gguf package: pip install 'hf-prune[gguf]'")
requires_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama.cpp's Python binding is not installed: pip install llama-cpp-python",
)

# Per-layer query heads, KV heads and MLP widths all differ; layer 3 has no attention and layer 2 no MLP.
MIXED_PLAN = hf_prune.PruningPlan(
    heads={0: [0, 1, 4, 5], 1: [0, 2, 4], 3: []},
    neurons={1: list(range(0, 48, 2)), 2: []},
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(vocab_size=300)


def tiny_model(family: str, tokenizer, mixed: bool = False):
    model = make_tiny_model(family, vocab_size=len(tokenizer))
    return hf_prune.apply_plan(hf_prune.to_pruned(model), MIXED_PLAN) if mixed else model


def reader_field(reader, key):
    return reader.fields[key].contents()


def greedy_in_transformers(model, input_ids: list[int], max_new_tokens: int) -> tuple[list[int], np.ndarray]:
    prompt = torch.tensor([input_ids])
    use_cache = getattr(model, "can_generate_with_cache", lambda: True)()
    with torch.no_grad():
        tokens = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=use_cache,
        )
        logits = model(prompt).logits[0].numpy()
    return tokens[0, len(input_ids) :].tolist(), logits


def test_heterogeneous_model_is_written_as_deci_with_per_layer_arrays(tmp_path, tokenizer):
    model = tiny_model("llama", tokenizer, mixed=True)
    written = export_gguf(model, tmp_path / "mixed.gguf", tokenizer=tokenizer, outtype="f16")

    reader = gguf.GGUFReader(written.path)
    assert written.architecture == "deci"
    assert reader_field(reader, "general.architecture") == "deci"
    assert reader_field(reader, "deci.attention.head_count") == [4, 3, 6, 0]
    assert reader_field(reader, "deci.attention.head_count_kv") == [2, 3, 3, 0]
    assert reader_field(reader, "deci.feed_forward_length") == [64, 24, ZERO_MLP_WIDTH, 64]
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert "blk.3.attn_q.weight" not in tensors
    assert tuple(tensors["blk.1.ffn_gate.weight"].shape) == (48, 24)  # GGUF lists the row length first
    assert not tensors["blk.2.ffn_down.weight"].data.any()  # the zero MLP that keeps layer 2's attention output
    assert len(reader_field(reader, "tokenizer.ggml.tokens")) == model.config.vocab_size
    assert written.notes and "zero MLP" in written.notes[0]
    assert oct(written.path.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize(
    ("family", "build", "reason"),
    [
        ("llama", heterogeneous, "rotary_pairs"),
        ("qwen3", lambda model: hf_prune.apply_plan(hf_prune.to_pruned(model), MIXED_PLAN), "q/k norms"),
    ],
    ids=["narrowed-heads", "qwen3-under-deci"],
)
def test_what_gguf_cannot_express_is_refused_and_nothing_is_written(tmp_path, tokenizer, family, build, reason):
    model = build(make_tiny_model(family, vocab_size=len(tokenizer)))
    with pytest.raises(FormatError, match=reason):
        export_gguf(model, tmp_path / "refused.gguf", tokenizer=tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_a_quantized_model_is_refused(tmp_path, tokenizer):
    pytest.importorskip("optimum.quanto", reason="quantization needs optimum-quanto: pip install 'hf-prune[quant]'")
    model = hf_prune.quantize_weights(tiny_model("llama", tokenizer), "int8")
    with pytest.raises(FormatError, match="float model"):
        export_gguf(model, tmp_path / "quantized.gguf", tokenizer=tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_kept_without_overwrite(tmp_path, tokenizer):
    target = tmp_path / "model.gguf"
    target.write_text("keep me")
    with pytest.raises(OutputExistsError):
        export_gguf(tiny_model("llama", tokenizer), target, tokenizer=tokenizer)
    assert target.read_text() == "keep me"


@requires_llama_cpp
@pytest.mark.parametrize(
    ("family", "mixed"),
    [("llama", False), ("mistral", False), ("qwen2", False), ("qwen3", False), ("llama", True), ("qwen2", True)],
    ids=["llama", "mistral", "qwen2", "qwen3", "llama-deci", "qwen2-deci-with-biases"],
)
def test_tiny_models_generate_the_same_tokens_in_llama_cpp(tmp_path, tokenizer, family, mixed):
    model = tiny_model(family, tokenizer, mixed)
    written = export_gguf(model, tmp_path / "model.gguf", tokenizer=tokenizer, outtype="f32")
    prompt = [5, 17, 42, 8]  # shorter than the tiny Mistral's sliding window of 5, so all attend alike
    ours, logits = greedy_in_transformers(model, prompt, 1)
    theirs, their_logits = llama_cpp_greedy(written.path, prompt, 1)
    assert written.architecture == ("deci" if mixed else {"mistral": "llama"}.get(family, family))
    # llama.cpp keeps its KV cache in float16 by default: logits agree to about 0.1% of their range.
    assert np.abs(their_logits - logits).max() < 5e-3 * np.abs(logits).max()
    assert theirs == ours


@requires_llama_cpp
@requires_shared
@pytest.mark.parametrize(
    "plan",
    [
        hf_prune.PruningPlan(removed_layers=[2, 3]),
        hf_prune.PruningPlan(heads={0: [0, 1, 4, 5], 1: [0, 2, 4, 6], 3: []}, neurons={1: list(range(0, 172, 2)), 2: []}),
        hf_prune.PruningPlan(heads={0: []}, neurons={4: list(range(50))}),
    ],
    ids=["depth-stock", "heterogeneous-deci", "attention-free-layer-0"],
)
def test_real_stories260k_generates_the_same_tokens_in_llama_cpp(tmp_path, stories260k, plan):
    model = hf_prune.apply_plan(stories260k.model, plan)
    if plan.removed_layers:
        model = hf_prune.to_stock(model)  # what save_pruned writes for a depth-pruned model
    written = export_gguf(model, tmp_path / "stories.gguf", tokenizer=stories260k.tokenizer, outtype="f32")
    prompt = stories260k.tokenizer("Once upon a time").input_ids
    ours, _ = greedy_in_transformers(model, prompt, 24)
    theirs, _ = llama_cpp_greedy(written.path, prompt, 24)
    assert written.architecture == ("llama" if plan.removed_layers else "deci")
    assert theirs == ours


@requires_llama_cpp
@requires_shared
def test_llama_cpp_tokenizes_like_transformers(tmp_path, stories260k):
    from llama_cpp import Llama

    written = export_gguf(stories260k.model, tmp_path / "stories.gguf", tokenizer=stories260k.tokenizer)
    runtime = Llama(model_path=str(written.path), vocab_only=True, verbose=False)
    text = "Once upon a time, Lily saw a big red ball in the park. She said: \"Can I play?\""
    try:
        assert runtime.tokenize(text.encode(), add_bos=True) == stories260k.tokenizer(text).input_ids
    finally:
        runtime.close()


@requires_llama_cpp
@requires_smollm2
def test_real_smollm2_depth_pruned_runs_in_llama_cpp(tmp_path, smollm2):
    from llama_cpp import Llama

    model = hf_prune.to_stock(hf_prune.remove_layers(smollm2.model, range(20, 28)))
    written = export_gguf(model, tmp_path / "smollm2.gguf", tokenizer=smollm2.tokenizer, outtype="f32")
    text = "The capital of France is"
    prompt = smollm2.tokenizer(text).input_ids
    ours, _ = greedy_in_transformers(model, prompt, 8)
    theirs, _ = llama_cpp_greedy(written.path, prompt, 8)
    assert theirs == ours
    runtime = Llama(model_path=str(written.path), vocab_only=True, verbose=False)
    try:
        assert runtime.tokenize(text.encode(), add_bos=False) == prompt
        assert "im_start" in runtime.metadata["tokenizer.chat_template"]
    finally:
        runtime.close()


@requires_llama_cpp
@requires_shared
def test_cli_exports_and_checks_in_llama_cpp(tmp_path, stories260k):
    checkpoint = tmp_path / "mixed"
    model = hf_prune.apply_plan(hf_prune.to_pruned(stories260k.model), MIXED_PLAN)
    hf_prune.save_pruned(model, checkpoint, format="pruned", tokenizer=stories260k.tokenizer)
    target = tmp_path / "mixed.gguf"

    result = hf_prune_cli("export", checkpoint, "--format", "gguf", "--output", target, "--outtype", "f32", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["architecture"] == "deci" and report["greedy_tokens_equal"] is True
    assert target.is_file()

    again = hf_prune_cli("export", checkpoint, "--format", "gguf", "--output", target)
    assert again.returncode != 0
    assert "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1



@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda model: hf_prune.apply_plan(hf_prune.to_pruned(model), MIXED_PLAN), "llama.cpp architecture `deci`"),
        (heterogeneous, "cannot be written to GGUF: GGUF cannot express layer 2"),
    ],
    ids=["deci", "narrowed-heads"],
)
def test_model_card_names_llama_cpp_only_where_the_export_works(tmp_path, tokenizer, build, expected):
    model = build(make_tiny_model("llama", vocab_size=len(tokenizer)))
    record = hf_prune.save_pruned(model, tmp_path / "checkpoint", tokenizer=tokenizer)
    card = (tmp_path / "checkpoint" / "README.md").read_text()
    assert "### llama.cpp" in card and expected in card
    assert ("refused" in record.serving["gguf"]) == ("cannot" in expected)
    assert "vLLM" not in card and "TGI" not in card  # no test covers them


def tiny_gemma3(tokenizer) -> torch.nn.Module:
    """Seven layers in llama.cpp's gemma3 pattern (layer 5 global), a window shorter than the test prompts."""
    from transformers import Gemma3TextConfig

    layer_types = ["full_attention" if index % 6 == 5 else "sliding_attention" for index in range(7)]
    config = Gemma3TextConfig(
        **dict(TINY_SIZES, num_hidden_layers=7, vocab_size=len(tokenizer)),
        head_dim=8,
        query_pre_attn_scalar=8,
        sliding_window=5,
        layer_types=layer_types,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    )
    torch.manual_seed(0)
    return randomize(AutoModelForCausalLM.from_config(config).eval())


@requires_llama_cpp
@pytest.mark.parametrize(
    "plan",
    [
        None,
        # The same query heads (one per KV group) and neurons in every layer: uniform widths, as llama.cpp's gemma3 needs.
        hf_prune.PruningPlan(heads=dict.fromkeys(range(7), [0, 2, 4]), neurons=dict.fromkeys(range(7), list(range(0, 64, 2)))),
        hf_prune.PruningPlan(removed_layers=[6]),
    ],
    ids=["dense", "uniform-width", "last-layer-removed"],
)
def test_gemma3_generates_the_same_tokens_in_llama_cpp(tmp_path, tokenizer, plan):
    model = tiny_gemma3(tokenizer)
    if plan is not None:
        model = hf_prune.apply_plan(model, plan)
        if plan.removed_layers:
            model = hf_prune.to_stock(model)
    written = export_gguf(model, tmp_path / "gemma3.gguf", tokenizer=tokenizer, outtype="f32")
    prompt = [5, 17, 42, 8, 99, 3, 250, 61, 12, 7, 140]  # longer than the sliding window of 5
    ours, logits = greedy_in_transformers(model, prompt, 6)
    theirs, their_logits = llama_cpp_greedy(written.path, prompt, 6)
    assert written.architecture == "gemma3" and written.notes == []
    reader = gguf.GGUFReader(written.path)
    assert reader_field(reader, "gemma3.attention.sliding_window") == 5
    assert np.abs(their_logits - logits).max() < 5e-3 * np.abs(logits).max()
    assert theirs == ours


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        (hf_prune.PruningPlan(removed_layers=[2]), r"global layers are \[4\].*every sixth layer global \(\[5\]\)"),
        (hf_prune.PruningPlan(neurons={3: list(range(32))}), "layer 3 has 6 heads, 3 KV heads and 32 MLP neurons"),
        (hf_prune.PruningPlan(neurons={1: []}), "layer 1 of this Gemma 3"),
    ],
    ids=["layer-pattern-broken", "per-layer-width", "mlp-removed"],
)
def test_gemma3_that_llama_cpp_cannot_express_is_refused(tmp_path, tokenizer, plan, reason):
    model = hf_prune.apply_plan(tiny_gemma3(tokenizer), plan)
    with pytest.raises(FormatError, match=reason):
        export_gguf(model, tmp_path / "refused.gguf", tokenizer=tokenizer)
    assert list(tmp_path.iterdir()) == []


@requires_llama_cpp
@requires_gemma3
def test_real_gemma3_runs_in_llama_cpp(tmp_path):
    from llama_cpp import Llama

    gemma3 = hf_prune.load_model("gemma3-270m")
    model = hf_prune.to_stock(hf_prune.remove_layers(gemma3.model, range(12, 18)))  # the last group of six
    written = export_gguf(model, tmp_path / "gemma3.gguf", tokenizer=gemma3.tokenizer, outtype="f32")
    text = "The capital of France is"
    prompt = gemma3.tokenizer(text).input_ids
    ours, logits = greedy_in_transformers(model, prompt, 8)
    theirs, their_logits = llama_cpp_greedy(written.path, prompt, 8)
    assert np.abs(their_logits - logits).max() < 5e-3 * np.abs(logits).max()
    assert theirs == ours
    runtime = Llama(model_path=str(written.path), vocab_only=True, verbose=False)
    try:
        mixed = "Once upon a time,  Lily saw\n a big red ball: émigré 12345 <start_of_turn>user"
        assert runtime.tokenize(mixed.encode(), add_bos=True, special=True) == gemma3.tokenizer(mixed).input_ids
    finally:
        runtime.close()


@requires_llama_cpp
def test_llama_cpp_failing_on_a_file_is_one_line_and_spares_the_caller(tmp_path, tokenizer):
    written = export_gguf(tiny_model("llama", tokenizer), tmp_path / "model.gguf", tokenizer=tokenizer, outtype="f32")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(written.path.read_bytes()[:4096])  # llama.cpp runs in a child process, which fails to load it
    with pytest.raises(LlamaCppError, match=r"llama.cpp failed running .*truncated.gguf \(exit status 1\)") as raised:
        llama_cpp_greedy(truncated, [5, 17], 2)
    assert "\n" not in str(raised.value)
    assert llama_cpp_greedy(written.path, [5, 17], 2)[0]  # and this process goes on running llama.cpp
