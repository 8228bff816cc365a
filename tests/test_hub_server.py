"""The test Hub server against the real huggingface_hub client, over loopback, with no mocks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session, hf_raise_for_status

from tests import hub_server as hub
from tests.hub_server import ORG, READ_TOKEN, WRITE_TOKEN, HubServer, HubUser

hub_server = hub.hub_server  # the fixture, made visible to the tests of this module

REPO = "alice/tiny-model"
WEIGHTS = os.urandom(1_200_000)  # > 1 MB: LFS by name and by size


def _status(error: pytest.ExceptionInfo) -> int:
    return error.value.response.status_code


@pytest.fixture
def api(hub_server) -> HfApi:
    return HfApi(endpoint=hub_server.url, token=WRITE_TOKEN)


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "checkpoint"
    (folder / "nested").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 48}\n')
    (folder / "nested" / "notes.txt").write_text("small text file\n")
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    return folder


def _snapshot_in_subprocess(server: HubServer, repo_id: str, hf_home: Path, *, token: str | None = None) -> dict:
    """snapshot_download in a fresh interpreter, configured only through the environment; {path: sha256}."""
    code = textwrap.dedent(
        f"""
        import hashlib, json, os
        from huggingface_hub import snapshot_download
        root = snapshot_download({repo_id!r}, token={token!r})
        print(json.dumps({{
            os.path.relpath(os.path.join(d, f), root): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(root) for f in files
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=server.subprocess_env(hf_home), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_whoami_and_create_repo(hub_server, api):
    assert api.whoami()["name"] == "alice"
    assert {org["name"] for org in api.whoami()["orgs"]} == {ORG}

    url = api.create_repo(REPO)
    assert (url.repo_id, url.repo_type, url.endpoint) == (REPO, "model", hub_server.url)
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(REPO)
    assert _status(conflict) == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    assert len(hub_server.commits(REPO)) == 1  # the empty initial commit, as the Hub's (minus .gitattributes)

    space = api.create_repo(f"{ORG}/demo", repo_type="space", space_sdk="gradio")
    assert (space.repo_type, space.repo_id) == ("space", f"{ORG}/demo")
    api.upload_file(path_or_fileobj=b"import gradio\n", path_in_repo="app.py", repo_id=f"{ORG}/demo", repo_type="space")
    info = api.space_info(f"{ORG}/demo")
    assert info.sdk == "gradio" and [s.rfilename for s in info.siblings] == ["app.py"]
    assert hub_server.files(f"{ORG}/demo", repo_type="space") == {"app.py": b"import gradio\n"}
    local = hf_hub_download(f"{ORG}/demo", "app.py", repo_type="space")  # GET /spaces/{id}/resolve/main/app.py
    assert Path(local).read_bytes() == b"import gradio\n"
    assert set(hub_server.repos) == {REPO, f"spaces/{ORG}/demo"}


def test_push_lfs_skip_unchanged_and_download_in_fresh_process(hub_server, api, folder, tmp_path):
    api.create_repo(REPO)
    first = api.upload_folder(folder_path=folder, repo_id=REPO)

    # The weights took the LFS path (batch + PUT + verify) and the commit itself is small: nothing inlined.
    assert hub_server.count("lfs-batch") == 1 and hub_server.count("lfs-upload") == 1
    assert hub_server.count("lfs-verify") == 1 and hub_server.count("xet-token") == 0
    (commit_request,) = [r for r in hub_server.requests if r.endpoint == "commit"]
    assert commit_request.body_size < 10_000
    stored = hub_server.repo(REPO).head().files
    assert stored["model.safetensors"].lfs_sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert not stored["config.json"].is_lfs

    info = api.repo_info(REPO, files_metadata=True)
    assert info.sha == first.oid
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == {"config.json", "nested/notes.txt", "model.safetensors"}
    assert siblings["model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert siblings["model.safetensors"].size == len(WEIGHTS) and siblings["config.json"].lfs is None
    assert sorted(api.list_repo_files(REPO)) == ["config.json", "model.safetensors", "nested/notes.txt"]

    # Pushing the same folder again: the client sees the oids from preupload and makes no commit.
    commits_before = len(hub_server.commits(REPO))
    again = api.upload_folder(folder_path=folder, repo_id=REPO)
    assert again.oid == first.oid
    assert len(hub_server.commits(REPO)) == commits_before
    assert hub_server.count("commit") == 1 and hub_server.count("lfs-upload") == 1

    # One changed file: one new commit, and the weights are not uploaded again.
    (folder / "config.json").write_text('{"hidden_size": 64}\n')
    changed = api.upload_folder(folder_path=folder, repo_id=REPO, commit_message="Change the config")
    assert changed.oid != first.oid
    assert len(hub_server.commits(REPO)) == commits_before + 1
    assert hub_server.count("lfs-upload") == 1
    titles = [c.title for c in api.list_repo_commits(REPO)]
    assert titles == ["Change the config", "Upload folder using huggingface_hub", "initial commit"]

    downloaded = _snapshot_in_subprocess(hub_server, REPO, tmp_path / "fresh_hf_home")
    expected = {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file()
    }
    assert downloaded == expected
    assert hub_server.count("resolve", method="GET") == 3


def test_commit_operations_and_reads(hub_server, api):
    api.create_repo(REPO)
    api.create_commit(
        REPO,
        operations=[
            CommitOperationAdd("a.txt", b"a"),
            CommitOperationAdd("dir/b.txt", b"b"),
            CommitOperationAdd("dir/sub/c.bin", b"\0binary"),  # binary content goes to LFS however small
        ],
        commit_message="three files",
    )
    assert hub_server.repo(REPO).head().files["dir/sub/c.bin"].is_lfs
    assert [e.path for e in api.list_repo_tree(REPO)] == ["a.txt", "dir"]
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="dir")] == ["dir/b.txt", "dir/sub"]
    assert [e.path for e in api.get_paths_info(REPO, ["a.txt", "dir", "missing"])] == ["a.txt", "dir"]
    tree = {e.path: e for e in api.list_repo_tree(REPO, recursive=True, expand=True)}
    assert tree["a.txt"].last_commit.title == "three files"

    local = hf_hub_download(REPO, "dir/sub/c.bin")  # endpoint and cache come from the patched constants
    assert Path(local).read_bytes() == b"\0binary"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.txt")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(REPO, revision="no-such-branch")

    api.delete_file("a.txt", REPO)
    api.delete_folder("dir/sub", REPO)
    assert hub_server.files(REPO) == {"dir/b.txt": b"b"}
    with pytest.raises(EntryNotFoundError):
        api.delete_file("a.txt", REPO)

    head, commits = api.repo_info(REPO).sha, len(hub_server.commits(REPO))
    # Deleting and re-adding the same file gets past the client's no-op filter; the server records nothing either.
    same = api.create_commit(
        REPO, [CommitOperationDelete("dir/b.txt"), CommitOperationAdd("dir/b.txt", b"b")], commit_message="no-op"
    )
    assert same.oid == head and len(hub_server.commits(REPO)) == commits

    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(REPO, [CommitOperationAdd("x", b"x")], commit_message="m", parent_commit="0" * 40)
    assert _status(stale) == 412
    pr = api.create_commit(REPO, [CommitOperationAdd("pr.txt", b"p")], commit_message="PR", create_pr=True)
    assert pr.pr_revision == "refs/pr/1" and api.repo_info(REPO).sha == head
    assert hub_server.files(REPO, revision="refs/pr/1")["pr.txt"] == b"p"


def test_authentication_and_permissions(hub_server, api):
    api.create_repo(REPO)
    anonymous = HfApi(endpoint=hub_server.url, token=False)
    impostor = HfApi(endpoint=hub_server.url, token="hf_not_a_real_token")
    reader = HfApi(endpoint=hub_server.url, token=READ_TOKEN)

    with pytest.raises(HfHubHTTPError) as no_token:
        anonymous.create_repo("alice/other")
    assert _status(no_token) == 401 and "Invalid username or password" in str(no_token.value)
    with pytest.raises(HfHubHTTPError) as no_token_push:
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert _status(no_token_push) == 401

    with pytest.raises(HfHubHTTPError) as bad_token:
        impostor.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert _status(bad_token) == 401 and "Invalid credentials in Authorization header" in str(bad_token.value)
    with pytest.raises(HfHubHTTPError) as bad_whoami:
        impostor.whoami()
    assert _status(bad_whoami) == 401
    with pytest.raises(HfHubHTTPError) as bad_read:  # a bad token is refused even where none is needed
        impostor.repo_info(REPO)
    assert _status(bad_read) == 401

    assert reader.repo_info(REPO).id == REPO  # public: readable by anyone
    with pytest.raises(HfHubHTTPError) as forbidden:
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert _status(forbidden) == 403
    with pytest.raises(HfHubHTTPError) as forbidden_create:
        reader.create_repo("alice/bobs-attempt")
    assert _status(forbidden_create) == 403
    assert hub_server.files(REPO) == {}

    # The client validates ids itself, so send a malformed one as it would reach the Hub from another client.
    response = get_session().post(
        f"{hub_server.url}/api/repos/create",
        json={"name": "bad--name", "organization": "alice"},
        headers={"authorization": f"Bearer {WRITE_TOKEN}"},
    )
    assert response.status_code == 400 and "Invalid repo name" in response.json()["error"]
    with pytest.raises(BadRequestError):
        hf_raise_for_status(response)
    assert get_session().get(f"{hub_server.url}/api/models/alice/.hidden-").status_code == 400


def test_private_repo_is_invisible_without_access(hub_server, api, tmp_path):
    private = "alice/secret"
    api.create_repo(private, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="weights.txt", repo_id=private)

    with pytest.raises(RepositoryNotFoundError) as anonymous:
        HfApi(endpoint=hub_server.url, token=False).repo_info(private)
    assert _status(anonymous) == 401
    with pytest.raises(RepositoryNotFoundError) as other_user:
        HfApi(endpoint=hub_server.url, token=READ_TOKEN).repo_info(private)
    assert _status(other_user) == 404
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private, "weights.txt", token=False)

    assert Path(hf_hub_download(private, "weights.txt", token=WRITE_TOKEN)).read_bytes() == b"secret"
    shared = HubServer(tokens={"hf_carol": HubUser("carol", write_namespaces=(), read_namespaces={"alice"})})
    assert shared.tokens["hf_carol"].can_read("alice") and not shared.tokens["hf_carol"].can_write("alice")
    plain = HubServer(tokens={"hf_dave": {"name": "dave", "write": {ORG}}}).tokens["hf_dave"]
    assert plain.can_write(ORG) and not plain.can_write("dave") and plain.can_read("dave")


def test_client_retries_injected_faults(hub_server, api, folder):
    api.create_repo(REPO)
    preupload_fault = hub_server.fail_next(endpoint="preupload", status=503)
    dropped_upload = hub_server.fail_next(endpoint="lfs-upload", drop=True)

    commit = api.upload_folder(folder_path=folder, repo_id=REPO)  # http_backoff retries both, 1 s each

    assert preupload_fault.hits == 1 and dropped_upload.hits == 1
    assert hub_server.count("preupload") == 2 and hub_server.count("lfs-upload") == 2
    assert api.repo_info(REPO).sha == commit.oid
    assert hub_server.files(REPO)["model.safetensors"] == WEIGHTS
    assert [r.status for r in hub_server.requests if r.endpoint == "preupload"] == [503, 200]


def test_download_survives_a_failed_head_and_a_dropped_get(hub_server):
    hub_server.seed(REPO, {"model.safetensors": WEIGHTS})
    head_fault = hub_server.fail_next(endpoint="resolve", method="HEAD", status=503)
    get_fault = hub_server.fail_next(endpoint="resolve", method="GET", drop=True)
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS
    assert head_fault.hits == 1 and get_fault.hits == 1
    assert hub_server.count("resolve", method="HEAD") == 2 and hub_server.count("resolve", method="GET") == 2


def test_commit_endpoint_is_not_retried(hub_server, api):
    api.create_repo(REPO)
    hub_server.fail_next(endpoint="commit", status=503, retry_after=0)
    with pytest.raises(HfHubHTTPError) as failed:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert _status(failed) == 503 and hub_server.count("commit") == 1
    assert len(hub_server.commits(REPO)) == 1  # nothing recorded; trying again works
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert hub_server.files(REPO) == {"x.txt": b"x"}


def test_validate_yaml_through_model_card(hub_server, api):
    good = ModelCard("---\nlicense: apache-2.0\ntags:\n- pruned\nlibrary_name: transformers\n---\n# A model\n")
    good.validate()  # posts to constants.ENDPOINT, patched by the fixture
    assert hub_server.count("validate-yaml") == 1

    with pytest.raises(ValueError, match='"license" must be a license id known to the Hub'):
        ModelCard("---\nlicense: not-a-license\n---\n# A model\n").validate()
    with pytest.raises(ValueError, match='"pipeline_tag" must be a string'):
        ModelCard("---\npipeline_tag: [a, b]\n---\n# A model\n").validate()

    # create_commit validates README.md through the JSON flavour of the same endpoint, before uploading anything.
    api.create_repo(REPO)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(path_or_fileobj=b"---\nlicense: 5\n---\n", path_in_repo="README.md", repo_id=REPO)
    assert hub_server.count("preupload") == 0
    api.upload_file(path_or_fileobj=str(good).encode(), path_in_repo="README.md", repo_id=REPO)
    assert api.model_info(REPO).card_data.license == "apache-2.0"


def test_multipart_lfs_upload(monkeypatch, tmp_path):
    with HubServer(tokens={WRITE_TOKEN: HubUser("alice")}, lfs_chunk_size=500_000) as server:
        server.configure_client(monkeypatch, tmp_path / "hf_home")
        api = HfApi(endpoint=server.url, token=WRITE_TOKEN)
        api.create_repo(REPO)
        api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="model.safetensors", repo_id=REPO)
        assert server.count("lfs-upload-part") == 3 and server.count("lfs-complete") == 1
        assert server.files(REPO) == {"model.safetensors": WEIGHTS}
    assert not server.errors


def test_tokens_are_never_logged(monkeypatch, tmp_path, caplog, capfd):
    with caplog.at_level(logging.DEBUG), HubServer(tokens={WRITE_TOKEN: HubUser("alice")}, verbose=True) as server:
        server.configure_client(monkeypatch, tmp_path / "hf_home")
        api = HfApi(endpoint=server.url, token=WRITE_TOKEN)
        api.create_repo(REPO)
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
        with pytest.raises(HfHubHTTPError):
            HfApi(endpoint=server.url, token="hf_wrong_token").repo_info(REPO)
    captured = capfd.readouterr()
    assert "POST /api/repos/create -> 200" in caplog.text
    for secret in (WRITE_TOKEN, "hf_wrong_token"):
        assert secret not in caplog.text and secret not in captured.out + captured.err
        assert all(secret not in repr(record) for record in server.requests)


def test_tree_pagination(monkeypatch, tmp_path):
    with HubServer(tree_page_size=2) as server:
        server.configure_client(monkeypatch, tmp_path / "hf_home")
        server.seed("alice/many", {f"file{i}.txt": b"%d" % i for i in range(5)})
        assert sorted(HfApi(endpoint=server.url).list_repo_files("alice/many")) == [f"file{i}.txt" for i in range(5)]
        assert server.count("tree") == 3
