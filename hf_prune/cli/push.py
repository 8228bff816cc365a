"""`hf-prune push`: publish a pruned checkpoint (and optionally its demo Space) on the Hub."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    parser = commands.add_parser(
        "push",
        help="push a pruned checkpoint to the Hub with its model card",
        description="Push DIR (written by hf-prune prune) to a model repository in one commit: weights, config, "
        "tokenizer, pruning.json, the model card rendered for the repository and a picture of the pruning profile. "
        "The token comes from --token, HF_TOKEN or the cached login; the Hub from HF_ENDPOINT.",
    )
    parser.add_argument("directory", metavar="DIR", help="checkpoint directory written by hf-prune prune")
    parser.add_argument("--repo-id", required=True, metavar="NAMESPACE/NAME", help="model repository (created if missing)")
    parser.add_argument("--space-id", metavar="NAMESPACE/NAME", help="also create or update a Gradio Space for it")
    parser.add_argument("--private", action="store_true", help="create the repositories as private")
    parser.add_argument("--token", default=None, help="a token with write access (prefer HF_TOKEN)")
    parser.add_argument("--message", default=None, help="commit message (default: a summary of the pruning)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..hub.push import push_to_hub

    result = push_to_hub(
        args.directory,
        args.repo_id,
        private=args.private,
        token=args.token,
        commit_message=args.message,
        space_id=args.space_id,
    )
    if result.created_commit:
        print(f"pushed {args.directory} to {result.repo_url} (commit {result.commit[:12]})")
    else:
        print(f"nothing changed since the last push to {result.repo_url} (commit {result.commit[:12]}); no commit made")
    if result.space_url:
        print(f"Space: {result.space_url}")
    return 0
