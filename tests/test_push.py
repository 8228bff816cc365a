"""`hf-prune push` and `push_to_hub` against the Hub-compatible server of tests/hub_server.py on 127.0.0.1.

Checkpoints come from real `hf-prune prune` runs on the tiny Llama; what was pushed is downloaded again in a fresh
process without hf_prune and must give the local copy's logits.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, SpaceCard

import hf_prune
from hf_prune.errors import (
    HubPermissionError,
    HubUnreachableError,
    InvalidRepoIdError,
    InvalidTokenError,
    MissingTokenError,
    NotACheckpointError,
)
from hf_prune.hub.space import SPACE_FILES, render_space_card
from tests.helpers import run_without_hf_prune
from tests.hub_server import ORG, READ_TOKEN, WRITE_TOKEN, HubServer

FAST = ["--num-samples", "4", "--seq-len", "32", "--quiet", "--evaluate", "--eval-seq-len", "32", "--eval-max-windows", "2"]


def cli(*args, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_prune", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """`stock`: one layer removed by Block Influence; `pruned`: TransAct with adaptive (heterogeneous) widths."""
    root = tmp_path_factory.mktemp("push")
    runs = {
        "stock": ["--method", "block-influence", "--num-layers", "1"],
        "pruned": ["--method", "transact", "--ratio", "0.25", "--allocation", "adaptive", "--shots", "1"],
    }
    for name, method in runs.items():
        result = cli("prune", tiny_checkpoint, *method, *FAST, "--output", root / name)
        assert result.returncode == 0, result.stderr
        assert json.loads((root / name / "pruning.json").read_text())["format"] == name
    return {name: root / name for name in runs}


def _logits_from_the_hub(server: HubServer, repo_id: str, hf_home: Path, input_ids: torch.Tensor, remote: bool):
    """snapshot_download + from_pretrained in a process without hf_prune, configured only by the environment."""
    out = hf_home.parent / f"{repo_id.replace('/', '--')}.pt.json"
    run_without_hf_prune(
        f"""
        import json, torch
        from huggingface_hub import snapshot_download
        from transformers import AutoModelForCausalLM
        path = snapshot_download({repo_id!r})
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code={remote})
        with torch.no_grad():
            logits = model(torch.tensor({input_ids.tolist()})).logits
        json.dump({{"logits": logits.tolist(), "class": type(model).__name__}}, open({str(out)!r}, "w"))
        """,
        env=server.subprocess_env(hf_home),
    )
    facts = json.loads(out.read_text())
    return torch.tensor(facts["logits"]), facts["class"]


@pytest.mark.parametrize("fmt", ["stock", "pruned"])
def test_push_then_load_from_the_hub_without_hf_prune(hub_server, checkpoints, fmt, tmp_path):
    directory, repo_id = checkpoints[fmt], f"alice/tiny-{fmt}"
    result = hf_prune.push_to_hub(directory, repo_id, token=WRITE_TOKEN)
    assert result.created_commit and result.repo_url.endswith(repo_id)

    # One commit on top of the initial one, holding the checkpoint, the card and the profile picture.
    commits = hub_server.commits(repo_id)
    assert len(commits) == 2 and commits[-1].oid == result.commit
    assert commits[-1].title.startswith(f"{json.loads((directory / 'pruning.json').read_text())['method']}: 4 -> ")
    files = hub_server.files(repo_id)
    assert {"config.json", "model.safetensors", "pruning.json", "README.md", "pruning_profile.png"} <= set(files)
    assert files["pruning_profile.png"].startswith(b"\x89PNG")
    assert files["model.safetensors"] == (directory / "model.safetensors").read_bytes()
    if fmt == "pruned":
        assert {"configuration_pruned.py", "modeling_pruned.py"} <= set(files)

    input_ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    local = hf_prune.load_model(str(directory)).model
    with torch.no_grad():
        expected = local(input_ids).logits
    logits, cls = _logits_from_the_hub(hub_server, repo_id, tmp_path / "hf_home", input_ids, remote=fmt == "pruned")
    assert cls == ("LlamaForCausalLM" if fmt == "stock" else "PrunedForCausalLM")
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_pushing_an_unchanged_folder_makes_no_commit(hub_server, checkpoints):
    first = hf_prune.push_to_hub(checkpoints["stock"], "alice/again", token=WRITE_TOKEN)
    second = hf_prune.push_to_hub(checkpoints["stock"], "alice/again", token=WRITE_TOKEN)
    assert first.created_commit and not second.created_commit
    assert second.commit == first.commit and len(hub_server.commits("alice/again")) == 2


def test_card_metadata_round_trips(hub_server, checkpoints):
    record = hf_prune.PruningRecord.load(checkpoints["stock"])
    hf_prune.push_to_hub(checkpoints["stock"], f"{ORG}/tiny-card", token=WRITE_TOKEN)
    card = ModelCard.load(f"{ORG}/tiny-card")  # downloaded from the server and parsed by huggingface_hub
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert {"pruned", "hf-prune", "block-influence"} <= set(data["tags"])
    assert data["model-index"][0]["name"] == "tiny-card"
    [result] = data["model-index"][0]["results"]
    assert result["metrics"][0]["type"] == "perplexity"
    assert result["metrics"][0]["value"] == pytest.approx(record.evaluation["perplexity"][0]["pruned"], rel=1e-4)
    assert card.data.eval_results[0].metric_value == result["metrics"][0]["value"]
    # The prose is generated from pruning.json, and the card addresses the repository it was pushed to.
    assert f"{ORG}/tiny-card" in card.text and "pruning_profile.png" in card.text
    assert f"| decoder layers | {record.layers_before} | {record.layers_after} |" in card.text
    # Metadata survives a re-render: parse, dump, parse.
    assert ModelCard(str(card)).data.to_dict() == data


def test_push_with_a_space(hub_server, checkpoints):
    result = hf_prune.push_to_hub(checkpoints["pruned"], "alice/tiny-demo-model", token=WRITE_TOKEN, space_id="alice/tiny-demo")
    assert result.space_url.endswith("spaces/alice/tiny-demo")
    files = hub_server.files("alice/tiny-demo", repo_type="space")
    assert set(files) == {"README.md", *SPACE_FILES}
    card = SpaceCard(files["README.md"].decode()).data.to_dict()
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and str(card["sdk_version"]).startswith("6.")
    assert card["models"][0] == "alice/tiny-demo-model" and len(card["short_description"]) <= 60
    assert hub_server.repo("alice/tiny-demo", "space").sdk == "gradio"
    # The app reads its models from that card when the Space has no variables set.
    assert yaml.safe_load(files["README.md"].decode().split("---")[1])["models"][0] == "alice/tiny-demo-model"


def test_space_card_lists_a_hub_source_and_omits_a_local_one(checkpoints):
    record = hf_prune.PruningRecord.load(checkpoints["stock"])
    local = SpaceCard(render_space_card("a/demo", "a/model", record)).data.to_dict()
    assert local["models"] == ["a/model"]  # the tiny model was pruned from a local folder
    record.source_model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    hub = SpaceCard(render_space_card("a/demo", "a/model", record)).data.to_dict()
    assert hub["models"] == ["a/model", "HuggingFaceTB/SmolLM2-135M-Instruct"]


# --------------------------------------------------------------------------------------------------- errors users meet


def test_errors_are_specific(hub_server, checkpoints, tmp_path):
    directory = checkpoints["stock"]
    with pytest.raises(MissingTokenError, match="HF_TOKEN"):
        hf_prune.push_to_hub(directory, "alice/x")
    with pytest.raises(InvalidTokenError, match="401"):
        hf_prune.push_to_hub(directory, "alice/x", token="hf_expired_or_made_up")
    with pytest.raises(HubPermissionError, match="403"):
        hf_prune.push_to_hub(directory, "alice/x", token=READ_TOKEN)
    for bad in ("no-namespace", "a/b/c", "alice/bad name", "alice/--x"):
        with pytest.raises(InvalidRepoIdError, match="invalid repo id"):
            hf_prune.push_to_hub(directory, bad, token=WRITE_TOKEN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotACheckpointError, match="missing config.json, pruning.json"):
        hf_prune.push_to_hub(tmp_path / "empty", "alice/x", token=WRITE_TOKEN)
    assert "alice/x" not in hub_server.repos  # nothing was created by any of them


def test_server_errors_are_retried_then_succeed(hub_server, checkpoints):
    hub_server.fail_next(times=2, endpoint="commit", status=503)
    result = hf_prune.push_to_hub(checkpoints["stock"], "alice/flaky", token=WRITE_TOKEN, attempts=3)
    assert result.created_commit and hub_server.count("commit") == 3


def test_unreachable_hub_fails_clearly_after_retries(checkpoints):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HubUnreachableError, match=f"cannot reach http://127.0.0.1:{port} .* after 2 attempts"):
        hf_prune.push_to_hub(
            checkpoints["stock"], "alice/x", token=WRITE_TOKEN, endpoint=f"http://127.0.0.1:{port}", attempts=2
        )


@pytest.mark.parametrize(
    "token, repo_id, exit_code, message",
    [
        (WRITE_TOKEN, "alice/cli-model", 0, "pushed "),
        (None, "alice/cli-model", 2, "no Hugging Face token"),
        ("hf_secret_but_wrong_123", "alice/cli-model", 2, "rejected the token (401)"),
        (READ_TOKEN, "alice/cli-model", 2, "no write access"),
        (WRITE_TOKEN, "not a repo id", 2, "invalid repo id"),
    ],
    ids=["ok", "no-token", "invalid-token", "read-only-token", "bad-repo-id"],
)
def test_cli_push_is_one_line_and_never_prints_the_token(hub_server, checkpoints, tmp_path, token, repo_id, exit_code, message):
    env = hub_server.subprocess_env(tmp_path / "hf_home", **({"HF_TOKEN": token} if token else {}))
    result = cli("push", checkpoints["stock"], "--repo-id", repo_id, env=env)
    assert result.returncode == exit_code, result.stderr
    output = result.stdout + result.stderr
    assert message in output
    if exit_code:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("hf-prune: error: ")
    for secret in (WRITE_TOKEN, READ_TOKEN, "hf_secret_but_wrong_123"):
        assert secret not in output


def test_cli_push_token_flag_and_space(hub_server, checkpoints, tmp_path):
    env = hub_server.subprocess_env(tmp_path / "hf_home")
    result = cli(
        "push", checkpoints["pruned"], "--repo-id", "alice/flag", "--token", WRITE_TOKEN, "--space-id", "alice/flag-demo",
        "--message", "First upload", env=env,
    )
    assert result.returncode == 0, result.stderr
    assert WRITE_TOKEN not in result.stdout + result.stderr
    assert "Space: " in result.stdout
    assert hub_server.commits("alice/flag")[-1].title == "First upload"
    assert HfApi(endpoint=hub_server.url, token=WRITE_TOKEN).space_info("alice/flag-demo").sdk == "gradio"


def test_not_a_checkpoint_from_the_cli(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    result = cli("push", tmp_path, "--repo-id", "alice/x", env=None)
    assert result.returncode == 2 and "is not a pruned checkpoint" in result.stderr


def test_fresh_process_snapshot_sees_the_card(hub_server, checkpoints, tmp_path):
    """The card a user sees on the Hub is the rendered one, with the repository's own name in the load snippet."""
    hf_prune.push_to_hub(checkpoints["stock"], "alice/snippet", token=WRITE_TOKEN)
    code = textwrap.dedent(
        """
        from huggingface_hub import hf_hub_download
        print(open(hf_hub_download("alice/snippet", "README.md")).read())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=hub_server.subprocess_env(tmp_path / "hf_home"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert 'from_pretrained("alice/snippet"' in result.stdout
