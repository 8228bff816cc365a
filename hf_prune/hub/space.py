"""The demo Space: the Gradio app of `spaces/`, pointed at a pushed model, in one commit to a Space repository."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from huggingface_hub import CommitOperationAdd, HfApi, SpaceCard

from .._resources import resource_dir
from ..provenance import PruningRecord, looks_like_hub_id
from .retries import with_retries

# What the Space runs: the app, its requirements, and the card (rendered here, with the front matter the Hub reads).
SPACE_FILES = ("app.py", "space_generation.py", "space_figures.py", "requirements.txt")
SPACE_CARD = "README.md"
SHORT_DESCRIPTION_LIMIT = 60  # the Hub refuses longer `short_description`s


def space_dir() -> Path:
    """The folder holding the Space's files (`spaces/` of a checkout, or its copy in the installed package)."""
    return resource_dir("spaces")


def render_space_card(space_id: str, model_id: str, record: PruningRecord) -> str:
    """The Space's `README.md`: front matter (`sdk: gradio`, `models:` = the pruned model then its source) and prose.

    The source model is listed only when it is a Hub id (a model pruned from a local folder has none to show).

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> import hf_prune
    >>> from hf_prune.hub.space import render_space_card
    >>> from hf_prune.provenance import PruningRecord
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    ...                                      num_attention_heads=4))
    >>> record = PruningRecord.from_model(hf_prune.remove_layers(model, [1]), source_model="HuggingFaceTB/SmolLM2-135M")
    >>> card = render_space_card("me/smollm2-demo", "me/smollm2-2l", record)
    >>> "sdk: gradio" in card, "- HuggingFaceTB/SmolLM2-135M" in card
    (True, True)

    ```
    """
    base = record.source_model if looks_like_hub_id(record.source_model) else ""
    name = model_id.split("/")[-1]
    description = f"{name}, pruned with hf-prune ({record.method})"
    if len(description) > SHORT_DESCRIPTION_LIMIT:
        description = f"{record.method} pruning, side by side with the source"[:SHORT_DESCRIPTION_LIMIT]
    template = jinja2.Template((space_dir() / SPACE_CARD).read_text(encoding="utf-8"), undefined=jinja2.StrictUndefined)
    # Front-matter values are JSON strings, which YAML reads verbatim whatever characters they hold.
    return template.render(
        title=json.dumps(f"{name} vs its source"),
        license=record.license or "other",
        short_description=json.dumps(description),
        model_id=model_id,
        base_model_id=base,
        space_id=space_id,
    )


def space_operations(space_id: str, model_id: str, record: PruningRecord) -> list[CommitOperationAdd]:
    """The files of the Space: the rendered card (checked with huggingface_hub's parser) plus `SPACE_FILES`."""
    card = render_space_card(space_id, model_id, record)
    SpaceCard(card)  # raises on front matter the Hub would not read
    operations = [CommitOperationAdd(path_in_repo=SPACE_CARD, path_or_fileobj=card.encode("utf-8"))]
    operations += [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(space_dir() / name)) for name in SPACE_FILES
    ]
    return operations


def push_space(
    api: HfApi,
    space_id: str,
    model_id: str,
    record: PruningRecord,
    *,
    endpoint: str,
    private: bool = False,
    attempts: int = 5,
) -> str:
    """Create or update the Gradio Space `space_id` showing `model_id` next to its source; returns the Space's URL.

    Called by `push_to_hub(..., space_id=...)`; the model should be pushed first. A private model needs an
    `HF_TOKEN` secret in the Space's settings to be readable from it.

    Example:

    ```python
    >>> from huggingface_hub import HfApi
    >>> from hf_prune.checkpoint import PruningRecord
    >>> from hf_prune.hub.space import push_space
    >>> record = PruningRecord.load("pruned-smollm2")  # doctest: +SKIP
    >>> push_space(HfApi(), "me/smollm2-demo", "me/smollm2-22l", record, endpoint="https://huggingface.co")  # doctest: +SKIP
    'https://huggingface.co/spaces/me/smollm2-demo'

    ```
    """
    operations = space_operations(space_id, model_id, record)
    url = with_retries(
        lambda: api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True),
        what=f"create the Space {space_id}",
        endpoint=endpoint,
        attempts=attempts,
    )
    with_retries(
        lambda: api.create_commit(
            space_id,
            repo_type="space",
            operations=operations,
            commit_message=f"Demo of {model_id} (hf-prune {record.hf_prune_version})",
        ),
        what=f"commit to the Space {space_id}",
        endpoint=endpoint,
        attempts=attempts,
    )
    return str(url)
