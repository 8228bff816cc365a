"""Publishing a pruned checkpoint on the Hub: one commit with the weights, `pruning.json`, a card and a picture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import get_session, get_token, hf_raise_for_status, validate_repo_id

from ..errors import (
    InvalidRepoIdError,
    MissingTokenError,
    NotACheckpointError,
)
from ..provenance import PROFILE_NAME, RECORD_NAME, PruningRecord, profile_png, render_model_card
from .retries import with_retries

_PICKLES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass
class PushResult:
    """What a push did.

    Attributes:
        repo_url: the model repository's URL.
        commit: the commit the repository's main branch now points at.
        created_commit: False when nothing had changed since the last push (no empty commit is made).
        space_url: the Space's URL, when one was pushed too.
    """

    repo_url: str
    commit: str
    created_commit: bool
    space_url: str | None = None


def resolve_token(token: str | None = None) -> str:
    """The token to push with: `token`, else `HF_TOKEN`, else the cached login. Never printed or logged."""
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            "no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token (it needs write access)"
        )
    return token


def check_repo_id(repo_id: str) -> None:
    """A model or Space id must be `NAMESPACE/NAME` with the Hub's allowed characters."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise InvalidRepoIdError(f"invalid repo id {repo_id!r}: {str(error).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise InvalidRepoIdError(f"invalid repo id {repo_id!r}: expected NAMESPACE/NAME")


def read_checkpoint(directory: str | Path) -> PruningRecord:
    """The record of a pruned checkpoint directory, or a one-line error saying why it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotACheckpointError(f"{directory} is not a directory")
    missing = [name for name in ("config.json", RECORD_NAME) if not (directory / name).is_file()]
    if not any(directory.glob("*.safetensors")):
        missing.append("*.safetensors weights")
    if missing:
        raise NotACheckpointError(f"{directory} is not a pruned checkpoint written by hf-prune (missing {', '.join(missing)})")
    pickles = sorted(path.name for path in directory.iterdir() if path.suffix in _PICKLES)
    if pickles:
        raise NotACheckpointError(f"{directory} contains pickled files ({', '.join(pickles)}); only safetensors are pushed")
    try:
        return PruningRecord.load(directory)
    except (json.JSONDecodeError, TypeError) as error:
        raise NotACheckpointError(f"{directory / RECORD_NAME} is not a valid pruning record: {error}") from None


def validate_card(card: str, endpoint: str, repo_type: str = "model") -> ModelCard:
    """Parse the card's metadata with huggingface_hub (raises on bad model-index), and have the Hub validate it."""
    parsed = ModelCard(card)
    response = get_session().post(
        f"{endpoint}/api/validate-yaml", json={"repoType": repo_type, "content": card}, headers={"Accept": "text/plain"}
    )
    if response.status_code == 400:
        raise ValueError(f"the Hub rejected the model card's metadata: {response.text.strip()}")
    hf_raise_for_status(response)
    return parsed


def push_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    space_id: str | None = None,
    attempts: int = 5,
) -> PushResult:
    """Push a checkpoint written by `save_pruned` / `hf-prune prune` to a model repository, in one commit.

    The commit holds every file of `directory` (safetensors weights, config, tokenizer, `pruning.json`, the run
    report), the model card rendered for `repo_id` from `pruning.json` and validated by the Hub, and
    `pruning_profile.png`. Pushing an unchanged directory again makes no commit. With `space_id`, a Gradio Space that
    demonstrates the model next to its source is created or updated too.

    Args:
        directory: the checkpoint directory.
        repo_id: `NAMESPACE/NAME`; created if missing (an existing repository is fine).
        private: create the repository as private (an existing one keeps its visibility).
        token: a token with write access; defaults to `HF_TOKEN` or the cached login.
        endpoint: the Hub URL; defaults to `HF_ENDPOINT` or https://huggingface.co.
        commit_message: defaults to a summary of the pruning.
        space_id: also push the demo Space there.
        attempts: tries per Hub call on server errors and connection failures.

    Example:

    ```python
    >>> import hf_prune
    >>> result = hf_prune.push_to_hub("runs/smollm2-block-influence", "me/smollm2-22l")  # doctest: +SKIP
    >>> result.created_commit  # doctest: +SKIP
    True

    ```
    """
    record = read_checkpoint(directory)
    check_repo_id(repo_id)
    if space_id is not None:
        check_repo_id(space_id)
    token = resolve_token(token)
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    directory = Path(directory)

    card = render_model_card(record, repo_id=repo_id)
    with_retries(lambda: validate_card(card, endpoint), what="validate the model card", endpoint=endpoint, attempts=attempts)
    url = with_retries(
        lambda: api.create_repo(repo_id, private=private, exist_ok=True),
        what=f"create {repo_id}",
        endpoint=endpoint,
        attempts=attempts,
    )
    head_before = _head(api, repo_id, "model", endpoint, attempts)
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(directory).as_posix(), path_or_fileobj=str(path))
        for path in sorted(directory.rglob("*"))
        # The card and the picture are rendered afresh below, for this repository.
        if path.is_file() and path.name not in ("README.md", PROFILE_NAME) and not path.name.startswith(".")
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    operations.append(CommitOperationAdd(path_in_repo=PROFILE_NAME, path_or_fileobj=profile_png(record)))
    message = commit_message or default_commit_message(record)
    commit = with_retries(
        lambda: api.create_commit(repo_id, operations=operations, commit_message=message),
        what=f"commit to {repo_id}",
        endpoint=endpoint,
        attempts=attempts,
    )
    result = PushResult(repo_url=str(url), commit=commit.oid, created_commit=commit.oid != head_before)
    if space_id is not None:
        from .space import push_space

        result.space_url = push_space(api, space_id, repo_id, record, endpoint=endpoint, private=private, attempts=attempts)
    return result


def _head(api: HfApi, repo_id: str, repo_type: str, endpoint: str, attempts: int) -> str | None:
    info = with_retries(
        lambda: api.repo_info(repo_id, repo_type=repo_type), what=f"read {repo_id}", endpoint=endpoint, attempts=attempts
    )
    return info.sha


def default_commit_message(record: PruningRecord) -> str:
    """E.g. `block-influence: 30 -> 22 layers, 134.5M -> 106.2M parameters (hf-prune 0.1.0)`."""
    from ..provenance import human_count

    return (
        f"{record.method}: {record.layers_before} -> {record.layers_after} layers, "
        f"{human_count(record.params_before)} -> {human_count(record.params_after)} parameters "
        f"(hf-prune {record.hf_prune_version})"
    )
