"""A Hub-compatible HTTP server for tests: the real `huggingface_hub` client, a real socket, no mocks.

`HubServer` listens on 127.0.0.1 (a free port, a background thread, standard library `http.server`) and speaks the
part of the Hugging Face Hub HTTP API that `huggingface_hub` 2.x uses to create repositories, push commits (regular
and LFS files), read repository metadata and download files. Repositories live in memory as a chain of commits, each
commit holding the full file map, so a push can be inspected (`server.commits(...)`, `server.files(...)`) and
downloaded again by `snapshot_download` in another process.

Client calls served, and the endpoints behind them (read from the huggingface_hub 2.4 sources):

    HfApi.whoami                                GET    /api/whoami-v2
    HfApi.create_repo / delete_repo             POST   /api/repos/create      DELETE /api/repos/delete
    HfApi.update_repo_settings                  PUT    /api/{type}s/{id}/settings
    RepoCard.validate, create_commit(README.md) POST   /api/validate-yaml
    HfApi.repo_info / model_info / space_info   GET    /api/{type}s/{id}  and  /api/{type}s/{id}/revision/{rev}
    HfApi.list_repo_files / list_repo_tree      GET    /api/{type}s/{id}/tree/{rev}[/{path}]   (Link-paginated)
    HfApi.get_paths_info                        POST   /api/{type}s/{id}/paths-info/{rev}
    HfApi.list_repo_commits / list_repo_refs    GET    /api/{type}s/{id}/commits/{rev},  /api/{type}s/{id}/refs
    create_commit: preupload_lfs_files          POST   /api/{type}s/{id}/preupload/{rev}
                   LFS batch + upload + verify  POST   /{prefix}{id}.git/info/lfs/objects/batch
                                                PUT    /lfs-upload/{ticket}[/{part}], POST /lfs-upload/{ticket}
                                                POST   /{prefix}{id}.git/info/lfs/objects/verify
                   the commit itself            POST   /api/{type}s/{id}/commit/{rev}   (NDJSON)
    (upload_file, upload_folder, delete_file, delete_folder all go through create_commit)
    hf_hub_download / snapshot_download         HEAD, GET  /{prefix}{id}/resolve/{rev}/{path}

`{type}s` is models, datasets or spaces; `{prefix}` is "", "datasets/" or "spaces/".

Pointing the client here. `HfApi(endpoint=server.url)` and `snapshot_download(..., endpoint=server.url)` are enough
for most calls, but some code reads `huggingface_hub.constants` directly: `RepoCard.validate` always posts to
`constants.ENDPOINT`, the module-level functions (`huggingface_hub.create_repo`, ...) are bound to an `HfApi` made
at import time, and `HF_ENDPOINT` is read once, at import. `configure_client(monkeypatch, hf_home)` (done by the
`hub_server` fixture) patches all of that for the test, and sets the environment so that a subprocess (which
imports huggingface_hub afresh) talks to this server too: `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_DISABLE_XET=1`,
`HF_HUB_DISABLE_TELEMETRY=1`, and no `HF_TOKEN`. Nothing then goes to huggingface.co.

What the client does that shapes this server:

* Xet. The client uploads through Xet whenever the `hf_xet` package is installed (it is a dependency of
  huggingface_hub): it never asks the server. Only `HF_HUB_DISABLE_XET=1` (`constants.HF_HUB_DISABLE_XET`) selects
  the LFS path, so `configure_client` sets it; the Xet token endpoints answer 400 saying so. Downloads use Xet only
  when a resolve response carries `X-Xet-Hash`, which this server never sends.
* LFS vs regular. `preupload` decides per file: LFS for the Hub's default LFS patterns (`*.safetensors`, `*.bin`,
  ...), for anything larger than `lfs_threshold` and for binary content (a NUL byte in the 512-byte sample); the
  client forces empty files to regular. The LFS batch response points back at this server with a signed upload
  URL that needs no Authorization header (the client sends none there, as to S3); the PUT is checked against the
  announced sha256 and size. A "regular" commit entry that should have been LFS is rejected, as the Hub rejects
  binary files, so weights never travel base64-inlined in the commit.
* Empty commits. `preupload` returns each existing file's `oid` (sha256 for LFS files, git blob sha1 for regular
  ones); `create_commit` drops additions whose local oid equals it and, when nothing is left, does not call the
  commit endpoint at all ("No files have been modified since last commit. Skipping to prevent empty commit.") and
  returns the head from `repo_info`. LFS objects already stored get no upload action in the batch response. Should a
  commit change nothing anyway, the server records no commit and answers with the current head.
* Retries. `preupload`, the LFS batch call, the LFS PUTs, verify and tree pagination go through `http_backoff`
  (retries on 408/429/5xx and on dropped connections, sleeping 1 s, 2 s, 4 s...; `Retry-After` replaces the sleep
  with its value + 1 s). The commit POST of `create_commit`, `create_repo`, `repo_info`, `whoami` and
  `validate-yaml` are not retried, so a fault injected on "commit" surfaces as an HfHubHTTPError. `hf_hub_download`
  repeats a failed HEAD, this time with backoff, when it has no cached copy; its GET is retried on 408/429 and,
  after 1 s, on a dropped connection (resuming with `Range: bytes=N-`), not on 5xx.
* Errors. The client turns `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound` into the matching
  exception, and `{"error": ...}` bodies into the message. A 401 without that header is a plain HfHubHTTPError over
  http (the client's 401 -> RepositoryNotFoundError rule only matches https URLs).

Authentication: a `HubServer` gets `tokens={token: HubUser(...)}`. A request without a token may read public repos;
a write without a token is a 401 ("Invalid username or password."), an unknown token is a 401 on any endpoint
("Invalid credentials in Authorization header"), a token without write access to the namespace is a 403, and a
private repo the token cannot read does not exist (401 anonymously, 404 otherwise, both `RepoNotFound`). Malformed
repo ids are a 400. Tokens are never logged or stored in the request log; logging is off unless `verbose=True`, and
even then only the method, path and status are logged.

Fault injection: `server.fail_next(times=2, endpoint="preupload", status=503)` makes the next two matching requests
fail (or, with `drop=True`, close the connection without an answer); `server.count("preupload")` counts requests
per endpoint (faulted ones included), `server.requests` lists them.

Differences from the Hub worth knowing: a new repository starts with one empty "initial commit" (the Hub also puts
a `.gitattributes` in it), so a snapshot holds exactly the pushed files; repo ids are case-sensitive; a pushed
`.gitattributes` does not change which files are LFS; there are no gated repos, discussions or Xet.

Example (import the fixture into the test module, or into a conftest.py to share it):

    from huggingface_hub import HfApi
    from tests.hub_server import WRITE_TOKEN, hub_server  # noqa: F401 (the fixture)

    def test_push(hub_server):
        api = HfApi(endpoint=hub_server.url, token=WRITE_TOKEN)
        api.create_repo("alice/tiny")
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="alice/tiny")
        assert hub_server.files("alice/tiny") == {"config.json": b"{}"}
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import http.server
import json
import logging
import math
import os
import re
import secrets
import socket
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest
import yaml  # a dependency of huggingface_hub itself: the client parses cards with it too

logger = logging.getLogger(__name__)

# Tokens of the `hub_server` fixture: alice writes to her namespace and to an organisation; bob's token is read-only.
WRITE_TOKEN = "hf_test_alice_write_token"
READ_TOKEN = "hf_test_bob_read_token"
ORG = "hf-prune-test-org"

REPO_TYPES = ("model", "dataset", "space")
_TYPE_FROM_SEGMENT = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")

# The Hub's default `.gitattributes`: files matching these are stored in LFS whatever their size.
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle",
    "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip

# License ids the Hub's metadata validation accepts (https://huggingface.co/docs/hub/repositories-licenses).
KNOWN_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0
    cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0
    cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
    gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr
    mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma
    unknown other""".split()
)
_SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")

# Names: ASCII letters, digits, "_", "-", "."; not starting or ending with "-" or "."; no "--" or ".."; <= 96 chars.
_NAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_YAML_BLOCK_RE = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")  # as huggingface_hub.repocard
_CREDENTIAL_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "HF_HUB_OFFLINE")


# --------------------------------------------------------------------------------------------------------------------
# What the server stores
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubUser:
    """Who a token belongs to.

    Args:
        name: the user name (`whoami()["name"]`), also the namespace of repos created without one.
        write_namespaces: namespaces the token may create repos in and push to; defaults to `{name}`. Pass `()` for a
            read-only token.
        read_namespaces: namespaces whose private repos the token may read, besides the writable ones.
    """

    name: str
    write_namespaces: frozenset[str] | None = None
    read_namespaces: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        writable = {self.name} if self.write_namespaces is None else set(self.write_namespaces)
        object.__setattr__(self, "write_namespaces", frozenset(writable))
        object.__setattr__(self, "read_namespaces", frozenset(self.read_namespaces))

    @classmethod
    def coerce(cls, value: HubUser | Mapping[str, Any]) -> HubUser:
        """Accept `HubUser(...)` or a plain `{"name": ..., "write": {...}, "read": {...}}`."""
        if isinstance(value, HubUser):
            return value
        return cls(value["name"], value.get("write"), frozenset(value.get("read", ())))

    def can_write(self, namespace: str) -> bool:
        return namespace in self.write_namespaces

    def can_read(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.write_namespaces or namespace in self.read_namespaces


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit. `lfs_sha256` is set for files stored in LFS."""

    path: str
    data: bytes = field(repr=False)
    blob_id: str  # git blob sha1 of the content, or of the LFS pointer for LFS files (as on the Hub)
    lfs_sha256: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    @property
    def pointer_size(self) -> int | None:
        return len(_lfs_pointer(self.lfs_sha256, self.size)) if self.lfs_sha256 else None

    @classmethod
    def make(cls, path: str, data: bytes, *, lfs: bool) -> StoredFile:
        if lfs:
            sha = hashlib.sha256(data).hexdigest()
            return cls(path, data, git_blob_oid(_lfs_pointer(sha, len(data))), sha)
        return cls(path, data, git_blob_oid(data))


@dataclass(frozen=True)
class Commit:
    """A commit: its id, its parent, and the full file map of the repository at that commit."""

    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: datetime
    files: Mapping[str, StoredFile] = field(repr=False)

    def contents(self) -> dict[str, bytes]:
        """`{path: bytes}` of every file."""
        return {path: stored.data for path, stored in self.files.items()}


@dataclass
class Repo:
    """A repository: commits by id and branches (`main`, `refs/pr/N`) pointing at them."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: datetime
    sdk: str | None = None
    gated: str | bool = False
    commits: dict[str, Commit] = field(default_factory=dict, repr=False)
    branches: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict, repr=False)  # sha256 -> content, once uploaded
    pull_requests: int = 0

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def key(self) -> str:
        """The repo as it appears in URLs: `alice/model`, `spaces/alice/demo`, `datasets/alice/data`."""
        return _URL_PREFIX[self.repo_type] + self.repo_id

    def head(self, branch: str = "main") -> Commit:
        return self.commits[self.branches[branch]]

    def history(self, branch: str = "main") -> list[Commit]:
        """Commits reachable from `branch`, oldest first."""
        chain, oid = [], self.branches[branch]
        while oid is not None:
            chain.append(self.commits[oid])
            oid = self.commits[oid].parent
        return chain[::-1]


@dataclass
class Fault:
    """An injected failure for the next `times` matching requests (see `HubServer.fail_next`)."""

    times: int = 1
    status: int = 503
    endpoint: str | None = None
    path: str | None = None
    method: str | None = None
    drop: bool = False
    retry_after: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str, endpoint: str) -> bool:
        return (
            self.hits < self.times
            and (self.endpoint is None or self.endpoint == endpoint)
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or re.search(self.path, path) is not None)
        )


@dataclass
class RequestRecord:
    """One request as the server saw it (never its headers, so never a token)."""

    method: str
    path: str
    endpoint: str
    user: str | None = None
    status: int | None = None
    body_size: int = 0
    faulted: bool = False


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, the `oid` the Hub reports for regular files (same as huggingface_hub's)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------------------------------------------------
# Card metadata validation (POST /api/validate-yaml)
# --------------------------------------------------------------------------------------------------------------------


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


_STRING = (lambda v: isinstance(v, str), "must be a string")
_STRINGS = (lambda v: isinstance(v, str) or _is_str_list(v), "must be a string or an array of strings")
_BOOL = (lambda v: isinstance(v, bool), "must be a boolean")

_COMMON_FIELDS = {"license_name": _STRING, "license_link": _STRING, "tags": _STRINGS, "thumbnail": _STRING}
_FIELDS = {
    "model": {
        **_COMMON_FIELDS,
        "language": _STRINGS,
        "datasets": _STRINGS,
        "metrics": _STRINGS,
        "base_model": _STRINGS,
        "library_name": _STRING,
        "pipeline_tag": _STRING,
        "model_name": _STRING,
        "new_version": _STRING,
        "inference": (lambda v: isinstance(v, (bool, dict)), "must be a boolean or an object"),
        "widget": (lambda v: isinstance(v, list), "must be an array"),
    },
    "dataset": {**_COMMON_FIELDS, "language": _STRINGS, "task_categories": _STRINGS, "pretty_name": _STRING},
    "space": {
        **_COMMON_FIELDS,
        "title": _STRING,
        "emoji": _STRING,
        "sdk": (lambda v: v in SPACE_SDKS, f"must be one of [{', '.join(SPACE_SDKS)}]"),
        "sdk_version": _STRING,
        "python_version": _STRING,
        "app_file": _STRING,
        "app_port": (lambda v: isinstance(v, int) and not isinstance(v, bool), "must be a number"),
        "short_description": _STRING,
        "pinned": _BOOL,
        "colorFrom": (lambda v: v in _SPACE_COLORS, f"must be one of [{', '.join(_SPACE_COLORS)}]"),
        "colorTo": (lambda v: v in _SPACE_COLORS, f"must be one of [{', '.join(_SPACE_COLORS)}]"),
        "models": _STRINGS,
        "datasets": _STRINGS,
    },
}


def _model_index_errors(model_index: Any) -> list[str]:
    """The shape the Hub requires of `model-index` (what `ModelCardData(eval_results=...)` writes)."""
    if not isinstance(model_index, list):
        return ['"model-index" must be an array']
    errors = []
    for i, entry in enumerate(model_index):
        where = f'"model-index[{i}]'
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f'{where}.name" is required and must be a string')
            continue
        results = entry.get("results")
        if not isinstance(results, list):
            errors.append(f'{where}.results" must be an array')
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'{at}" must be an object')
                continue
            task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f'{at}.task.type" is required and must be a string')
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
                errors.append(f'{at}.dataset" must have string "type" and "name"')
            if not isinstance(metrics, list) or not all(
                isinstance(m, dict) and isinstance(m.get("type"), str) and "value" in m for m in metrics
            ):
                errors.append(f'{at}.metrics" must be an array of objects with a string "type" and a "value"')
    return errors


def validate_card_metadata(content: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """(errors, warnings) of a card's YAML metadata: YAML syntax, an object, and the types of the fields the Hub
    checks (a subset of its schema: license ids, string/array fields, Space settings, `model-index`)."""
    match = _YAML_BLOCK_RE.search(content)
    if match is None:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        metadata = yaml.safe_load(match.group(2))
    except yaml.YAMLError as error:
        return [f"Error parsing YAML metadata: {str(error).splitlines()[0]}"], []
    if metadata is None or metadata == {}:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(metadata, dict):
        return ['"metadata" must be an object'], []
    errors = []
    if "license" in metadata:
        value = metadata["license"]
        if not isinstance(value, str) or value not in KNOWN_LICENSES:
            errors.append(f'"license" must be a license id known to the Hub (e.g. apache-2.0, mit, other): {value!r}')
    for key, (check, requirement) in _FIELDS.get(repo_type, _FIELDS["model"]).items():
        if key in metadata and not check(metadata[key]):
            errors.append(f'"{key}" {requirement}')
    if repo_type == "model" and "model-index" in metadata:
        errors.extend(_model_index_errors(metadata["model-index"]))
    return errors, []


def _card_data(files: Mapping[str, StoredFile]) -> dict | None:
    readme = files.get("README.md")
    match = _YAML_BLOCK_RE.search(readme.data.decode("utf-8", "replace")) if readme is not None else None
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------------------------------------


class HubError(Exception):
    """An error answered the way the Hub does: `{"error": message}`, `X-Error-Message`, maybe `X-Error-Code`."""

    def __init__(self, status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})

    def response(self) -> _Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code is not None:
            headers["X-Error-Code"] = self.code
        return _Response.json(self.status, {"error": self.message}, headers)


def _repo_not_found(user: HubUser | None) -> HubError:
    # Like the Hub: a repo you may not see does not exist; anonymous callers get a 401 (they might see it if logged in).
    return HubError(401 if user is None else 404, "Repository not found", code="RepoNotFound")


_JSON = "application/json"


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: Mapping[str, str] | None = None, *, content_type: str = _JSON
    ) -> _Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def text(cls, status: int, text: str) -> _Response:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage
    body: bytes
    user: HubUser | None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise HubError(400, "Invalid JSON body") from None


@dataclass
class _UploadTicket:
    """A signed upload URL handed out by the LFS batch endpoint (it stays valid, so a retried PUT still works)."""

    repo: tuple[str, str]
    oid: str
    size: int
    chunk_size: int | None = None
    parts: dict[int, bytes] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


class HubServer:
    """A Hub-compatible server on 127.0.0.1; use as a context manager or with `start()` / `stop()`.

    Args:
        tokens: `{token: HubUser(...)}` (or `{token: {"name": ..., "write": {...}}}`).
        lfs_threshold: files larger than this many bytes are uploaded in LFS mode (the Hub uses 10 MB).
        lfs_chunk_size: when set, LFS objects larger than this are uploaded in parts of this size (the client's
            multipart path); by default every object is one PUT.
        tree_page_size: entries per page of the tree listing (the client follows `Link: rel="next"`).
        verbose: log each request's method, path and status on this module's logger (never headers or tokens).
    """

    def __init__(
        self,
        tokens: Mapping[str, HubUser | Mapping[str, Any]] | None = None,
        *,
        lfs_threshold: int = 1024 * 1024,
        lfs_chunk_size: int | None = None,
        tree_page_size: int = 1000,
        verbose: bool = False,
    ) -> None:
        self.tokens = {token: HubUser.coerce(user) for token, user in (tokens or {}).items()}
        self.lfs_threshold = lfs_threshold
        self.lfs_chunk_size = lfs_chunk_size
        self.tree_page_size = tree_page_size
        self.verbose = verbose
        self.errors: list[str] = []  # tracebacks of unexpected server-side exceptions (answered with a 500)
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._tickets: dict[str, _UploadTicket] = {}
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        if self._httpd is None:
            self._httpd = _HTTPServer(self)
            serve = lambda: self._httpd.serve_forever(poll_interval=0.05)  # noqa: E731 (short poll: quick stop())
            self._thread = threading.Thread(target=serve, name="HubServer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, the endpoint to give the client."""
        if self._httpd is None:
            raise RuntimeError("the HubServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- pointing the client here ----------------------------------------------------------------------------------

    def client_env(self, hf_home: str | Path) -> dict[str, str]:
        """Environment variables that make a fresh huggingface_hub process use this server, LFS, and `hf_home`."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    def subprocess_env(self, hf_home: str | Path, **extra: str) -> dict[str, str]:
        """A full environment for `subprocess.run(..., env=...)`: `os.environ` without tokens, plus `client_env`."""
        env = {k: v for k, v in os.environ.items() if k not in _CREDENTIAL_ENV_VARS}
        return {**env, **self.client_env(hf_home), **extra}

    def configure_client(self, monkeypatch: pytest.MonkeyPatch, hf_home: str | Path) -> None:
        """Point huggingface_hub at this server for the rest of the test, in this process and in subprocesses.

        Sets `client_env` in `os.environ` (for subprocesses), removes token variables, and patches what this process
        read at import: `constants.ENDPOINT` (used by `RepoCard.validate` and `hf_hub_url`), the module-level `HfApi`
        behind `huggingface_hub.create_repo` & co, Xet and telemetry switches, and the cache and token paths.
        """
        from huggingface_hub import constants, hf_api

        hf_home = Path(hf_home)
        for name, value in self.client_env(hf_home).items():
            monkeypatch.setenv(name, value)
        for name in _CREDENTIAL_ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        patches = {
            "ENDPOINT": self.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": self.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_DISABLE_XET": True,  # the client would upload through Xet whenever hf_xet is installed
            "HF_HUB_DISABLE_TELEMETRY": True,  # else the user agent fetches {ENDPOINT}/api/agent-harnesses
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(hf_home / "hub"),
            "HF_ASSETS_CACHE": str(hf_home / "assets"),
            "HF_XET_CACHE": str(hf_home / "xet"),
            "HF_TOKEN_PATH": str(hf_home / "token"),
            "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        }
        for name, value in patches.items():
            monkeypatch.setattr(constants, name, value)
        monkeypatch.setattr(hf_api.api, "endpoint", self.url)

    # -- inspecting and seeding ------------------------------------------------------------------------------------

    @property
    def repos(self) -> dict[str, Repo]:
        """Every repository, keyed as in URLs: `alice/model`, `spaces/alice/demo`."""
        with self._lock:
            return {repo.key: repo for repo in self._repos.values()}

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        with self._lock:
            return self._repos[(repo_type, repo_id)]

    def commits(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[Commit]:
        """The commits of `branch`, oldest first (the first is the repository's empty "initial commit")."""
        with self._lock:
            return self._repos[(repo_type, repo_id)].history(branch)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """`{path: bytes}` at `revision` (a branch or a commit id)."""
        with self._lock:
            return _resolve(self._repos[(repo_type, repo_id)], revision).contents()

    def seed(
        self,
        repo_id: str,
        files: Mapping[str, bytes] | None = None,
        *,
        repo_type: str = "model",
        private: bool = False,
        sdk: str | None = None,
        message: str = "Seed files",
    ) -> Repo:
        """Create a repository directly (no HTTP) and commit `files` to it, e.g. to test downloads."""
        namespace, _, _ = repo_id.partition("/")
        with self._lock:
            repo = self._repos.get((repo_type, repo_id)) or self._create(repo_type, repo_id, private, sdk, namespace)
            if files:
                base = repo.head()
                new = dict(base.files)
                for path, data in files.items():
                    new[path] = StoredFile.make(path, data, lfs=self._upload_mode(path, len(data), data[:512]) == "lfs")
                self._commit(repo, "main", base, new, message, "", namespace)
            return repo

    # -- fault injection and request log ---------------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 503,
        endpoint: str | None = None,
        path: str | None = None,
        method: str | None = None,
        drop: bool = False,
        retry_after: int | None = None,
    ) -> Fault:
        """Make the next `times` requests that match fail with `status` (or, with `drop`, lose their connection).

        Match on `endpoint` (a name from `ENDPOINTS`, e.g. "preupload", "commit", "lfs-upload"), on `path` (a regex
        searched in the URL path) and/or on `method`. With `retry_after`, the error carries `Retry-After` (the client
        then sleeps that + 1 s instead of its backoff). Returns the `Fault`, whose `hits` counts what it caught.
        """
        fault = Fault(times, status, endpoint, path, method, drop, retry_after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def request_counts(self) -> Counter[str]:
        """Requests per endpoint name, failed and faulted ones included."""
        with self._lock:
            return Counter(record.endpoint for record in self._requests)

    def count(self, endpoint: str, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._requests if r.endpoint == endpoint and (method is None or r.method == method))

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- internals: storage ------------------------------------------------------------------------------------------

    def _create(self, repo_type: str, repo_id: str, private: bool, sdk: str | None, author: str) -> Repo:
        repo = Repo(repo_type, repo_id, private, _now(), sdk)
        self._repos[(repo_type, repo_id)] = repo
        self._commit(repo, "main", None, {}, "initial commit", "", author)
        return repo

    def _commit(
        self,
        repo: Repo,
        branch: str,
        base: Commit | None,
        files: dict[str, StoredFile],
        title: str,
        message: str,
        author: str,
    ) -> Commit | None:
        """Record a commit on `branch`, unless it would not change anything (then None)."""
        if base is not None and _same_tree(base.files, files):
            return None
        identity = {
            "repo": repo.key,
            "parent": base.oid if base else None,
            "files": sorted((path, stored.blob_id) for path, stored in files.items()),
            "title": title,
            "message": message,
            "author": author,
        }
        oid = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        commit = Commit(oid, base.oid if base else None, title, message, author, _now(), MappingProxyType(dict(files)))
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def _upload_mode(self, path: str, size: int, sample: bytes) -> str:
        """Where the Hub would store a file: LFS for LFS patterns, big files and binary content."""
        if size == 0:
            return "regular"
        name = path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p) for p in LFS_PATTERNS):
            return "lfs"
        return "lfs" if size > self.lfs_threshold or b"\0" in sample else "regular"

    # -- internals: request handling -------------------------------------------------------------------------------

    def _authenticate(self, headers: Any) -> HubUser | None:
        authorization = headers.get("Authorization")
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _record(self, method: str, path: str, endpoint: str, body_size: int) -> tuple[RequestRecord, Fault | None]:
        with self._lock:
            record = RequestRecord(method, path, endpoint, body_size=body_size)
            self._requests.append(record)
            for fault in self._faults:
                if fault.matches(method, path, endpoint):
                    fault.hits += 1
                    record.faulted = True
                    return record, fault
        return record, None

    def _route(self, method: str, raw_path: str) -> tuple[str, Callable[[_Request], _Response]]:
        """(endpoint name, handler) for a request; unknown routes get a 404 handler."""
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments.pop()

        def fixed(handler: Callable[..., _Response], *args: Any) -> Callable[[_Request], _Response]:
            return lambda request: handler(request, *args)

        if segments[:1] == ["api"]:
            rest = segments[1:]
            simple = {
                ("GET", "whoami-v2"): ("whoami", self._whoami),
                ("POST", "repos/create"): ("create-repo", self._create_repo),
                ("DELETE", "repos/delete"): ("delete-repo", self._delete_repo),
                ("POST", "validate-yaml"): ("validate-yaml", self._validate_yaml),
                ("GET", "agent-harnesses"): ("agent-harnesses", self._agent_harnesses),
            }
            if (method, "/".join(rest)) in simple:
                return simple[(method, "/".join(rest))]
            if len(rest) >= 3 and rest[0] in _TYPE_FROM_SEGMENT:
                repo = (_TYPE_FROM_SEGMENT[rest[0]], rest[1], rest[2])
                tail = rest[3:]
                action = tail[0] if tail else None
                revision, remainder = _split_revision(tail[1:])
                routes = {
                    ("GET", None): ("repo-info", fixed(self._repo_info, repo, None)),
                    ("GET", "revision"): ("repo-info", fixed(self._repo_info, repo, revision)),
                    ("GET", "tree"): ("tree", fixed(self._tree, repo, revision, "/".join(remainder))),
                    ("POST", "paths-info"): ("paths-info", fixed(self._paths_info, repo, revision)),
                    ("GET", "commits"): ("commits", fixed(self._list_commits, repo, revision)),
                    ("GET", "refs"): ("refs", fixed(self._refs, repo)),
                    ("POST", "preupload"): ("preupload", fixed(self._preupload, repo, revision)),
                    ("POST", "commit"): ("commit", fixed(self._create_commit, repo, revision)),
                    ("PUT", "settings"): ("settings", fixed(self._settings, repo)),
                    ("GET", "xet-write-token"): ("xet-token", self._xet),
                    ("GET", "xet-read-token"): ("xet-token", self._xet),
                }
                if (method, action) in routes:
                    return routes[(method, action)]
        elif segments[:1] == ["lfs-upload"] and len(segments) in (2, 3):
            ticket = segments[1]
            if method == "PUT" and len(segments) == 2:
                return "lfs-upload", fixed(self._lfs_put, ticket, None)
            if method == "PUT":
                return "lfs-upload-part", fixed(self._lfs_put, ticket, segments[2])
            if method == "POST" and len(segments) == 2:
                return "lfs-complete", fixed(self._lfs_complete, ticket)
        else:
            repo_type = "model"
            if segments and segments[0] in ("datasets", "spaces") and len(segments) > 3:
                repo_type, segments = _TYPE_FROM_SEGMENT[segments[0]], segments[1:]
            if len(segments) >= 3:
                namespace, name, tail = segments[0], segments[1], segments[2:]
                if name.endswith(".git") and tail[:3] == ["info", "lfs", "objects"] and method == "POST":
                    repo = (repo_type, namespace, name[: -len(".git")])
                    if tail[3:] == ["batch"]:
                        return "lfs-batch", fixed(self._lfs_batch, repo)
                    if tail[3:] == ["verify"]:
                        return "lfs-verify", fixed(self._lfs_verify, repo)
                if tail[0] == "resolve" and method in ("GET", "HEAD"):
                    revision, path = _split_revision(tail[1:])
                    return "resolve", fixed(self._resolve_file, (repo_type, namespace, name), revision, "/".join(path))
        return "unknown", self._not_found

    # Each handler takes the request (and route arguments) and returns a _Response or raises HubError.

    def _not_found(self, request: _Request) -> _Response:
        raise HubError(404, "Sorry, we can't find the page you are looking for.")

    def _agent_harnesses(self, request: _Request) -> _Response:
        # Asked by the client's user-agent code unless telemetry is disabled: an empty registry detects no agent.
        return _Response.json(200, {"standardEnvVars": [], "harnesses": {}})

    def _xet(self, request: _Request) -> _Response:
        raise HubError(400, "This test Hub stores files in LFS only, not Xet: set HF_HUB_DISABLE_XET=1 in the client")

    def _whoami(self, request: _Request) -> _Response:
        user = request.user
        if user is None:
            raise HubError(401, "Invalid username or password.")
        orgs = sorted((user.write_namespaces | user.read_namespaces) - {user.name})
        roles = {org: "write" if user.can_write(org) else "read" for org in orgs}
        role = "write" if user.write_namespaces else "read"
        return _Response.json(
            200,
            {
                "type": "user",
                "id": hashlib.sha1(user.name.encode()).hexdigest()[:24],
                "name": user.name,
                "fullname": user.name,
                "email": None,
                "emailVerified": False,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [
                    {"type": "org", "name": org, "fullname": org, "roleInOrg": roles[org]}
                    for org in orgs
                ],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test token", "role": role}},
            },
        )

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"

    def _create_repo(self, request: _Request) -> _Response:
        user = request.user
        if user is None:
            raise HubError(401, "Invalid username or password.")
        payload = request.json()
        if not isinstance(payload, dict):
            raise HubError(400, "Invalid JSON body")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        namespace, name = payload.get("organization") or user.name, payload.get("name")
        _check_name(namespace, "namespace")
        _check_name(name, "repo name")
        repo_id = f"{namespace}/{name}"
        if not user.can_write(namespace):
            raise HubError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"')
        sdk = payload.get("sdk")
        if repo_type == "space" and sdk not in SPACE_SDKS:
            raise HubError(400, f'"sdk" must be one of [{", ".join(SPACE_SDKS)}]')
        visibility = payload.get("visibility")
        private = visibility == "private" if visibility is not None else bool(payload.get("private", False))
        url = self._repo_url(repo_type, repo_id)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # The client relies on `url` being there: create_repo(exist_ok=True) returns RepoUrl(409 body["url"]).
                body = {"error": f"You already created this {repo_type} repo", "url": url}
                return _Response.json(409, body, {"X-Error-Message": body["error"]})
            repo = self._create(repo_type, repo_id, private, sdk if repo_type == "space" else None, user.name)
        return _Response.json(200, {"url": url, "name": repo_id, "id": repo.head().oid[:24]})

    def _delete_repo(self, request: _Request) -> _Response:
        payload = request.json() or {}
        user = request.user
        if user is None:
            raise HubError(401, "Invalid username or password.")
        namespace, name = payload.get("organization") or user.name, payload.get("name")
        _check_name(namespace, "namespace")
        _check_name(name, "repo name")
        repo_type = payload.get("type") or "model"
        with self._lock:
            self._writable((repo_type, namespace, name), user)
            del self._repos[(repo_type, f"{namespace}/{name}")]
        return _Response.json(200, {})

    def _settings(self, request: _Request, repo_ref: tuple[str, str, str]) -> _Response:
        payload = request.json() or {}
        with self._lock:
            repo = self._writable(repo_ref, request.user)
            if "visibility" in payload:
                repo.private = payload["visibility"] == "private"
            if "private" in payload:
                repo.private = bool(payload["private"])
            if "gated" in payload:
                repo.gated = payload["gated"]
        return _Response.json(200, {})

    def _validate_yaml(self, request: _Request) -> _Response:
        payload = request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("content"), str):
            raise HubError(400, '"content" is required')
        errors, warnings = validate_card_metadata(payload["content"], payload.get("repoType") or "model")
        status = 400 if errors else 200
        accept = request.headers.get("Accept", "")
        if "text/plain" in accept and "application/json" not in accept:
            # RepoCard.validate asks for text and raises ValueError(response.text) on a 400.
            return _Response.text(status, "\n".join(f"- {message}" for message in errors))
        # HfApi._validate_yaml reads {"errors": [{"message"}], "warnings": [{"message"}]} (warnings are warned).
        return _Response.json(
            status,
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
        )

    # -- repository reads --------------------------------------------------------------------------------------------

    def _readable(self, repo_ref: tuple[str, str, str], user: HubUser | None) -> Repo:
        repo_type, namespace, name = repo_ref
        _check_name(namespace, "namespace")
        _check_name(name, "repo name")
        repo = self._repos.get((repo_type, f"{namespace}/{name}"))
        if repo is None or (repo.private and not (user is not None and user.can_read(namespace))):
            raise _repo_not_found(user)
        return repo

    def _writable(self, repo_ref: tuple[str, str, str], user: HubUser | None, *, pull_request: bool = False) -> Repo:
        if user is None:
            raise HubError(401, "Invalid username or password.")
        repo = self._readable(repo_ref, user)
        # Opening a pull request only needs read access, as on the Hub.
        if not pull_request and not user.can_write(repo.namespace):
            raise HubError(403, f"You don't have write access to {repo.repo_type} {repo.repo_id}")
        return repo

    def _repo_info(self, request: _Request, repo_ref: tuple[str, str, str], revision: str | None) -> _Response:
        with self._lock:
            repo = self._readable(repo_ref, request.user)
            commit = _resolve(repo, revision or "main")
            created = repo.created_at
        blobs = _is_true(request.param("blobs"))
        siblings = []
        for path, stored in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=stored.size, blobId=stored.blob_id)
                if stored.is_lfs:
                    sibling["lfs"] = {
                        "sha256": stored.lfs_sha256,
                        "size": stored.size,
                        "pointerSize": stored.pointer_size,
                    }
            siblings.append(sibling)
        card = _card_data(commit.files) or {}
        tags = card.get("tags")
        tags = [tags] if isinstance(tags, str) else tags if _is_str_list(tags) else []
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.key.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(created),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "likes": 0,
            "tags": tags,
            "siblings": siblings,
            "usedStorage": sum(stored.size for stored in commit.files.values()),
        }
        if card:
            info["cardData"] = card
        if repo.repo_type == "model":
            info.update(downloads=0, library_name=card.get("library_name"), pipeline_tag=card.get("pipeline_tag"))
        elif repo.repo_type == "space":
            info.update(sdk=repo.sdk, subdomain=f"{repo.namespace}-{repo.repo_id.split('/')[1]}".lower())
        else:
            info.update(downloads=0)
        return _Response.json(200, info)

    def _entries(self, repo: Repo, commit: Commit, paths: list[str], expand: bool) -> list[dict]:
        """Tree entries for `paths` (files and directories) of `commit`, as the tree and paths-info APIs list them."""
        directories = _directories(commit.files)
        last_commits = _last_commits(repo, commit) if expand else {}
        entries = []
        for path in paths:
            if path in commit.files:
                stored = commit.files[path]
                entry: dict[str, Any] = {"type": "file", "oid": stored.blob_id, "size": stored.size, "path": path}
                if stored.is_lfs:
                    entry["lfs"] = {"oid": stored.lfs_sha256, "size": stored.size, "pointerSize": stored.pointer_size}
            elif path in directories:
                entry = {"type": "directory", "oid": _tree_oid(commit.files, path), "size": 0, "path": path}
            else:
                continue
            if expand:
                last = last_commits.get(path, commit)
                entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
            entries.append(entry)
        return entries

    def _tree(self, request: _Request, repo_ref: tuple[str, str, str], revision: str, path: str) -> _Response:
        with self._lock:
            repo = self._readable(repo_ref, request.user)
            commit = _resolve(repo, revision)
        path = path.strip("/")
        directories = _directories(commit.files)
        if path and path not in directories:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        recursive, expand = _is_true(request.param("recursive")), _is_true(request.param("expand"))
        base = f"{path}/" if path else ""
        listed = [
            p
            for p in sorted(directories | set(commit.files))
            if p.startswith(base) and p != path and (recursive or "/" not in p[len(base) :])
        ]
        start = int(request.param("cursor") or 0)
        page = listed[start : start + self.tree_page_size]
        headers = {}
        if start + self.tree_page_size < len(listed):
            flags = {"recursive": str(recursive).lower(), "expand": str(expand).lower()}
            query = urlencode({**flags, "cursor": start + self.tree_page_size})
            headers["Link"] = f'<{self.url}{request.path}?{query}>; rel="next"'
        return _Response.json(200, self._entries(repo, commit, page, expand), headers)

    def _paths_info(self, request: _Request, repo_ref: tuple[str, str, str], revision: str) -> _Response:
        with self._lock:
            repo = self._readable(repo_ref, request.user)
            commit = _resolve(repo, revision)
        form = parse_qs(request.body.decode(), keep_blank_values=True)
        paths = [p.strip("/") for p in form.get("paths", [])]
        expand = _is_true((form.get("expand") or ["false"])[-1])
        return _Response.json(200, self._entries(repo, commit, paths, expand))

    def _list_commits(self, request: _Request, repo_ref: tuple[str, str, str], revision: str) -> _Response:
        with self._lock:
            repo = self._readable(repo_ref, request.user)
            commit = _resolve(repo, revision)
            chain = []
            while commit is not None:
                chain.append(commit)
                commit = repo.commits[commit.parent] if commit.parent else None
        items = []
        for c in chain:
            item = {"id": c.oid, "title": c.title, "message": c.message, "authors": [{"user": c.author}]}
            item["date"] = _iso(c.date)
            if "formatted" in request.query.get("expand[]", []):
                item["formatted"] = {"title": c.title, "message": c.message}
            items.append(item)
        return _Response.json(200, items)

    def _refs(self, request: _Request, repo_ref: tuple[str, str, str]) -> _Response:
        with self._lock:
            repo = self._readable(repo_ref, request.user)
            branches = dict(repo.branches)
        refs = {"branches": [], "converts": [], "tags": []}
        pulls = []
        for name, target in sorted(branches.items()):
            if name.startswith("refs/pr/"):
                pulls.append({"name": name, "ref": name, "targetCommit": target})
            else:
                refs["branches"].append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": target})
        if _is_true(request.param("include_prs")):
            refs["pullRequests"] = pulls
        return _Response.json(200, refs)

    def _resolve_file(self, request: _Request, repo_ref: tuple[str, str, str], revision: str, path: str) -> _Response:
        with self._lock:
            repo = self._readable(repo_ref, request.user)
            commit = _resolve(repo, revision)
        stored = commit.files.get(path)
        if stored is None:
            # X-Repo-Commit lets the client cache that the file does not exist at this commit.
            raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.lfs_sha256 or stored.blob_id}"',
        }
        if stored.is_lfs:
            # hf_hub_download prefers these to ETag / Content-Length (on the Hub they come with a redirect to a CDN).
            headers.update({"X-Linked-Etag": f'"{stored.lfs_sha256}"', "X-Linked-Size": str(stored.size)})
        data, status = stored.data, 200
        range_header = request.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            start = int(match[1]) if match else -1
            end = min(int(match[2]) if match and match[2] else len(data) - 1, len(data) - 1)
            if not match or start > end:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        return _Response(status, data, headers)

    # -- pushing ---------------------------------------------------------------------------------------------------

    def _preupload(self, request: _Request, repo_ref: tuple[str, str, str], revision: str) -> _Response:
        payload = request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
            raise HubError(400, '"files" is required')
        with self._lock:
            repo = self._writable(repo_ref, request.user, pull_request=_is_true(request.param("create_pr")))
            commit = _resolve(repo, revision)
        gitignore = payload.get("gitIgnore")
        if gitignore is None and ".gitignore" in commit.files:
            gitignore = commit.files[".gitignore"].data.decode("utf-8", "replace")
        answers = []
        for item in payload["files"]:
            try:
                path, size, sample = item["path"], int(item["size"]), base64.b64decode(item.get("sample", ""))
            except (KeyError, TypeError, ValueError):
                raise HubError(400, "Each file needs a path, a size and a base64 sample") from None
            answer = {
                "path": path,
                "uploadMode": self._upload_mode(path, size, sample),
                "shouldIgnore": bool(gitignore) and _gitignored(path, gitignore),
            }
            existing = commit.files.get(path)
            if existing is not None:
                # The client compares this with its own oid (sha256 for LFS, git sha1 for regular) to skip unchanged
                # files, and makes no commit at all when nothing is left.
                answer["oid"] = existing.lfs_sha256 or existing.blob_id
            answers.append(answer)
        return _Response.json(200, {"files": answers, "commitOid": commit.oid})

    def _lfs_batch(self, request: _Request, repo_ref: tuple[str, str, str]) -> _Response:
        payload = request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("objects"), list):
            raise HubError(400, '"objects" is required')
        if payload.get("operation") != "upload":
            raise HubError(400, "Only LFS batch uploads are supported (downloads go through /resolve)")
        objects = []
        chunk_size = self.lfs_chunk_size
        with self._lock:
            repo = self._writable(repo_ref, request.user)
            for item in payload["objects"]:
                oid, size = item.get("oid"), item.get("size")
                if not isinstance(oid, str) or not _SHA256_RE.fullmatch(oid) or not isinstance(size, int) or size < 0:
                    error = {"code": 422, "message": "Invalid oid or size"}
                    objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0, "error": error})
                    continue
                entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in repo.lfs_objects:  # already stored: no actions, the client skips the upload
                    ticket = secrets.token_urlsafe(16)
                    multipart = chunk_size is not None and size > chunk_size
                    key = (repo.repo_type, repo.repo_id)
                    self._tickets[ticket] = _UploadTicket(key, oid, size, chunk_size if multipart else None)
                    upload_url = f"{self.url}/lfs-upload/{ticket}"
                    header: dict[str, str] = {}
                    if multipart:
                        header["chunk_size"] = str(chunk_size)
                        for part in range(1, math.ceil(size / chunk_size) + 1):
                            header[str(part)] = f"{upload_url}/{part}"
                    entry["actions"] = {
                        "upload": {"href": upload_url, "header": header, "expires_in": 3600},
                        "verify": {"href": f"{self.url}/{repo.key}.git/info/lfs/objects/verify", "header": {}},
                    }
                objects.append(entry)
        return _Response.json(
            200,
            {"transfer": "multipart" if chunk_size else "basic", "objects": objects, "hash_algo": "sha256"},
            content_type="application/vnd.git-lfs+json",
        )

    def _ticket(self, ticket: str) -> _UploadTicket:
        found = self._tickets.get(ticket)
        if found is None:
            raise HubError(403, "The request signature we calculated does not match the signature you provided.")
        return found

    def _store_lfs(self, ticket: _UploadTicket, data: bytes) -> None:
        if len(data) != ticket.size or hashlib.sha256(data).hexdigest() != ticket.oid:
            raise HubError(400, f"Uploaded content does not match oid {ticket.oid} and size {ticket.size}")
        repo = self._repos.get(ticket.repo)
        if repo is not None:
            repo.lfs_objects[ticket.oid] = data

    def _lfs_put(self, request: _Request, ticket_id: str, part: str | None) -> _Response:
        with self._lock:
            ticket = self._ticket(ticket_id)
            if part is None:
                self._store_lfs(ticket, request.body)
            elif not part.isdigit() or ticket.chunk_size is None:
                raise HubError(400, f"Unexpected part {part!r}")
            else:
                ticket.parts[int(part)] = request.body
        return _Response(200, b"", {"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})

    def _lfs_complete(self, request: _Request, ticket_id: str) -> _Response:
        payload = request.json()
        with self._lock:
            ticket = self._ticket(ticket_id)
            try:
                parts = sorted(payload["parts"], key=lambda p: p["partNumber"])
                chunks = [ticket.parts[p["partNumber"]] for p in parts]
                etags_match = all(p["etag"].strip('"') == hashlib.md5(c).hexdigest() for p, c in zip(parts, chunks))
            except (KeyError, TypeError, AttributeError):
                raise HubError(400, "Invalid multipart completion payload") from None
            if payload.get("oid") != ticket.oid or not etags_match:
                raise HubError(400, "Multipart completion does not match the uploaded parts")
            self._store_lfs(ticket, b"".join(chunks))
        return _Response.json(200, {})

    def _lfs_verify(self, request: _Request, repo_ref: tuple[str, str, str]) -> _Response:
        payload = request.json() or {}
        with self._lock:
            repo = self._writable(repo_ref, request.user)
            data = repo.lfs_objects.get(payload.get("oid"))
        if data is None or len(data) != payload.get("size"):
            raise HubError(404, f"LFS object {payload.get('oid')} was not uploaded")
        return _Response.json(200, {})

    def _create_commit(self, request: _Request, repo_ref: tuple[str, str, str], revision: str) -> _Response:
        try:
            lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        except (ValueError, UnicodeDecodeError):
            raise HubError(400, "Invalid NDJSON commit payload") from None
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0].get("value") or {}
        title = header.get("summary") or ""
        if not title:
            raise HubError(400, "The commit summary is required")
        create_pr = _is_true(request.param("create_pr"))
        with self._lock:
            user = request.user
            repo = self._writable(repo_ref, user, pull_request=create_pr)
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            base = repo.head(revision)
            parent = header.get("parentCommit")
            if parent is not None and parent != base.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(base.files)
            for line in lines[1:]:
                self._apply(repo, files, line)
            branch = revision
            if create_pr:
                repo.pull_requests += 1
                branch = f"refs/pr/{repo.pull_requests}"
                repo.branches[branch] = base.oid
            commit = self._commit(repo, branch, base, files, title, header.get("description") or "", user.name)
            oid = commit.oid if commit is not None else base.oid  # nothing changed: no commit, answer with the head
            pr_number = repo.pull_requests
        commit_url = f"{self.url}/{repo.key}/commit/{oid}"
        response = {"success": True, "commitOid": oid, "commitUrl": commit_url, "hookOutput": ""}
        if create_pr:
            response["pullRequestUrl"] = f"{self.url}/{repo.key}/discussions/{pr_number}"
        return _Response.json(200, response)

    def _apply(self, repo: Repo, files: dict[str, StoredFile], line: Any) -> None:
        """Apply one NDJSON operation of a commit to `files`."""
        if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
            raise HubError(400, "Invalid commit operation")
        key, value = line.get("key"), line["value"]
        path = value.get("path")
        if not isinstance(path, str) or not _valid_path(path.rstrip("/") if key == "deletedFolder" else path):
            raise HubError(400, f"Invalid path in commit: {path!r}")
        if key == "file":
            try:
                content = value["content"]
                base64_encoded = value.get("encoding") == "base64"
                data = base64.b64decode(content, validate=True) if base64_encoded else content.encode()
            except (KeyError, ValueError, AttributeError):
                raise HubError(400, f"Invalid content for {path}") from None
            if self._upload_mode(path, len(data), data[:512]) == "lfs":
                # The Hub refuses binary / large files outside LFS; so does this server, so weights never go inline.
                raise HubError(400, f"Your push was rejected because {path} is binary or large: use LFS for it")
            files[path] = StoredFile.make(path, data, lfs=False)
        elif key == "lfsFile":
            oid = value.get("oid")
            data = repo.lfs_objects.get(oid)
            if value.get("algo", "sha256") != "sha256" or data is None:
                raise HubError(400, f"LFS object {oid} for {path} was not uploaded to this repository")
            if "size" in value and value["size"] != len(data):
                raise HubError(400, f"LFS object {oid} for {path} does not have size {value['size']}")
            files[path] = StoredFile.make(path, data, lfs=True)
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            doomed = [p for p in files if p.startswith(prefix)]
            if not doomed:
                raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise HubError(400, f"Unknown commit operation {key!r}")


ENDPOINTS = (
    "whoami", "create-repo", "delete-repo", "settings", "validate-yaml", "agent-harnesses", "repo-info", "tree",
    "paths-info", "commits", "refs", "preupload", "lfs-batch", "lfs-upload", "lfs-upload-part", "lfs-complete",
    "lfs-verify", "commit", "resolve", "xet-token", "unknown",
)  # fmt: skip
"""Endpoint names used by `HubServer.count`, `request_counts` and `fail_next(endpoint=...)`."""
_SIGNED_ENDPOINTS = frozenset({"lfs-upload", "lfs-upload-part", "lfs-complete"})


# --------------------------------------------------------------------------------------------------------------------
# Helpers on stored trees
# --------------------------------------------------------------------------------------------------------------------


def _check_name(value: Any, what: str) -> None:
    valid = isinstance(value, str) and _NAME_RE.fullmatch(value) is not None
    if not valid or ".." in value or "--" in value or value.endswith(".git"):
        raise HubError(
            400,
            f"Invalid {what} {value!r}: use letters, digits, '-', '_' and '.', not starting or ending with '-' or '.',"
            " without '--' or '..', at most 96 characters",
        )


def _valid_path(path: str) -> bool:
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts) and parts[0] != ".git"


def _split_revision(parts: list[str]) -> tuple[str, list[str]]:
    """Split `[revision, *path]`; the client quotes `refs/pr/1` as one segment, but accept it unquoted too."""
    if not parts:
        return "main", []
    if parts[0] == "refs" and len(parts) >= 3 and parts[1] in ("pr", "heads", "convert", "tags"):
        revision, rest = "/".join(parts[:3]), parts[3:]
        return (revision[len("refs/heads/") :] if parts[1] == "heads" else revision), rest
    return parts[0], parts[1:]


def _resolve(repo: Repo, revision: str) -> Commit:
    if revision in repo.branches:
        return repo.commits[repo.branches[revision]]
    if re.fullmatch(r"[0-9a-f]{7,40}", revision):
        matches = [oid for oid in repo.commits if oid.startswith(revision)]
        if len(matches) == 1:
            return repo.commits[matches[0]]
    raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def _same_tree(a: Mapping[str, StoredFile], b: Mapping[str, StoredFile]) -> bool:
    return a.keys() == b.keys() and all(a[p].blob_id == b[p].blob_id for p in a)


def _directories(files: Mapping[str, StoredFile]) -> set[str]:
    return {path.rsplit("/", depth)[0] for path in files for depth in range(1, path.count("/") + 1)}


def _tree_oid(files: Mapping[str, StoredFile], directory: str) -> str:
    listing = "\n".join(f"{p} {f.blob_id}" for p, f in sorted(files.items()) if p.startswith(directory + "/"))
    return hashlib.sha1(listing.encode()).hexdigest()


def _last_commits(repo: Repo, commit: Commit) -> dict[str, Commit]:
    """For each file and directory of `commit`, the last commit (up to `commit`) that changed it."""
    chain = []
    current: Commit | None = commit
    while current is not None:
        chain.append(current)
        current = repo.commits[current.parent] if current.parent else None
    last: dict[str, Commit] = {}
    previous: Mapping[str, StoredFile] = {}
    for c in reversed(chain):
        for path, stored in c.files.items():
            if path not in previous or previous[path].blob_id != stored.blob_id:
                last[path] = c
                for directory in _directories({path: stored}):
                    last[directory] = c
        previous = c.files
    return last


def _gitignored(path: str, gitignore: str) -> bool:
    """A small .gitignore matcher: globs on the path or its name, directory patterns, `!` negations."""
    ignored = False
    for raw in gitignore.splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        anchored = "/" in pattern.rstrip("/")
        pattern = pattern.strip("/")
        parents = [path.rsplit("/", d)[0] for d in range(1, path.count("/") + 1)]
        candidates = [path, *parents] if anchored else [path, *parents, *path.split("/")]
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not negate
    return ignored


# --------------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: HubServer) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        connection, address = super().get_request()
        with self._connections_lock:
            self._connections.add(connection)
        return connection, address

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        # Never print to stderr (the default prints a traceback); a client hanging up is not a server bug.
        if not isinstance(sys.exc_info()[1], OSError):
            self.hub.errors.append(traceback.format_exc())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server_version = "HubServer/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    server: _HTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        # http.server logs request lines and errors to stderr; silence it (see `_dispatch` for opt-in logging).
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        endpoint, handler = hub._route(method, split.path)
        record, fault = hub._record(method, split.path, endpoint, len(body))
        if fault is not None and fault.drop:
            # Close without answering: the client sees "Server disconnected without sending a response".
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            response = _Response.json(fault.status, {"error": "Service unavailable (injected fault)"}, headers)
        else:
            try:
                query = parse_qs(split.query, keep_blank_values=True)
                # Upload URLs are signed, like S3's: the client sends no Authorization header there.
                user = None if endpoint in _SIGNED_ENDPOINTS else hub._authenticate(self.headers)
                request = _Request(method, split.path, query, self.headers, body, user)
                record.user = request.user.name if request.user else None
                response = handler(request)
            except HubError as error:
                response = error.response()
            except Exception:
                hub.errors.append(traceback.format_exc())
                response = _Response.json(500, {"error": "Internal server error"})
        record.status = response.status
        if hub.verbose:
            logger.info("%s %s -> %d", method, split.path, response.status)
        self._send(response, head_only=method == "HEAD")

    def _send(self, response: _Response, *, head_only: bool) -> None:
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **response.headers, "Content-Length": str(len(response.body))}
        for name, value in headers.items():
            self.send_header(name, value.encode("ascii", "backslashreplace").decode())  # headers must be latin-1
        self.end_headers()
        if not head_only:
            self.wfile.write(response.body)


# --------------------------------------------------------------------------------------------------------------------
# pytest fixture
# --------------------------------------------------------------------------------------------------------------------

DEFAULT_TOKENS = {
    WRITE_TOKEN: HubUser("alice", write_namespaces={"alice", ORG}),
    READ_TOKEN: HubUser("bob", write_namespaces=()),
}


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """A started `HubServer` with `DEFAULT_TOKENS` (alice: `WRITE_TOKEN`, writes to "alice" and `ORG`; bob:
    `READ_TOKEN`, read-only), with huggingface_hub pointed at it (`configure_client`, HF_HOME in `tmp_path`).

    Fails the test if the server hit an unexpected exception while handling a request.
    """
    with HubServer(tokens=DEFAULT_TOKENS) as server:
        server.configure_client(monkeypatch, tmp_path / "hf_home")
        yield server
    if server.errors:
        pytest.fail("HubServer errors:\n" + "\n".join(server.errors), pytrace=False)
