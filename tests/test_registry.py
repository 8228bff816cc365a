"""The method registry: names to (configuration, method) pairs, construction, and configurations that round-trip."""

from __future__ import annotations

import json

import pytest

from hf_prune.checkpoint import PruningRecord
from hf_prune.errors import InvalidPruningError
from hf_prune.scoring import (
    REGISTRY,
    BlockInfluenceConfig,
    LLMRankConfig,
    PruningMethod,
    build_method,
    get_method,
    get_method_config,
    method_config_from_dict,
)

# One non-default option per method, so a round trip that dropped options would show.
OPTIONS = {
    "block-influence": {"metric": "angular"},
    "last-layers": {},
    "random-layers": {"seed": 7},
    "transact": {"shots": 3, "allocation": "adaptive"},
    "llm-rank": {"gamma": 0.5, "allocation": "adaptive"},
    "magnitude": {"mlp_width": 10},
    "activation": {"attention_ratio": 0.0},
    "wanda-sp": {"gqa": "groups"},
    "random": {"seed": 3},
}


def test_every_registered_method_is_listed_here():
    assert set(REGISTRY) == set(OPTIONS)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_a_configuration_round_trips_through_json_and_builds_its_method(name):
    config = get_method_config(name, **OPTIONS[name])
    config_class, method_class = REGISTRY[name]
    assert type(config) is config_class
    settings = json.loads(json.dumps(config.to_dict()))
    assert settings["method"] == name
    assert method_config_from_dict(settings) == config
    assert config_class.from_dict(settings) == config
    method = build_method(config)
    assert type(method) is method_class and isinstance(method, PruningMethod) and method.config is config
    assert type(get_method(name, **OPTIONS[name])) is method_class


def test_settings_of_another_method_or_an_unknown_option_are_refused():
    with pytest.raises(InvalidPruningError, match="settings of method 'llm-rank' are not a BlockInfluenceConfig"):
        BlockInfluenceConfig.from_dict(LLMRankConfig().to_dict())
    with pytest.raises(InvalidPruningError, match="method block-influence has no option shots"):
        method_config_from_dict({"method": "block-influence", "shots": 2})
    with pytest.raises(InvalidPruningError, match="unknown method 'shortgpt'"):
        method_config_from_dict({"method": "shortgpt"})
    with pytest.raises(InvalidPruningError, match="without a 'method' name"):
        method_config_from_dict({"metric": "cosine"})


def test_a_record_written_with_the_target_among_the_settings_still_loads(tmp_path):
    old = {"method": "block-influence", "source_model": "m", "format": "stock", "params_before": 2, "params_after": 1,
           "layers_before": 2, "layers_after": 1, "removed_layers": [1], "per_layer": [],
           "kv_cache_bytes_per_token_before": 2, "kv_cache_bytes_per_token_after": 1, "dtype": "float32",
           "settings": {"method": "block-influence", "metric": "cosine", "iterative": False, "contiguous": False,
                        "target": {"num_layers": 1}}}
    (tmp_path / "pruning.json").write_text(json.dumps(old))
    record = PruningRecord.load(tmp_path)
    assert record.target == {"num_layers": 1}
    assert method_config_from_dict(record.settings) == BlockInfluenceConfig()
