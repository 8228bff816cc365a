"""The demo Space (spaces/app.py): a real pruned SmolLM2 checkpoint, the real Gradio server on 127.0.0.1, driven by
`gradio_client` and by headless Debian Chromium through Playwright. No mocks."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio", reason="the Space needs gradio 6: pip install 'gradio==6.*' gradio_client")
gradio_client = pytest.importorskip("gradio_client")

import hf_prune  # noqa: E402
from hf_prune.checkpoint import PruningRecord  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO_ROOT / "spaces"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROMPT = "The capital of France is"
NEW_TOKENS = 16
REMOVED = [20, 21, 22, 23]
LAYER_SCORES = [round(1.0 / (index + 2), 6) for index in range(30)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def space():
    """spaces/app.py as a module (it is the Space's app_file, not part of the package)."""
    spec = importlib.util.spec_from_file_location("hf_prune_space_app", SPACE_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def pruned_dir(smollm2, tmp_path_factory) -> Path:
    """SmolLM2-135M without layers 20-23, with one KV group of (new) layer 2 and a third of layer 5's MLP removed."""
    model = hf_prune.remove_layers(smollm2.model, REMOVED)
    model = hf_prune.remove_kv_groups(model, {2: [1]})
    model = hf_prune.remove_neurons(model, {5: range(512)})
    record = PruningRecord.from_model(
        model,
        method="block-influence",
        source_model=smollm2.source,
        calibration={"source": "builtin", "num_samples": 4, "seq_len": 32, "tokens_sha256": "ab" * 32, "seed": 0},
        scores={"method": "block-influence", "layer_scores": LAYER_SCORES},
        evaluation={"perplexity": [{"text": "builtin", "windows": 2, "seq_len": 64, "dense": 12.5, "pruned": 15.25}]},
    )
    path = tmp_path_factory.mktemp("space") / "smollm2-pruned"
    hf_prune.save_pruned(model, path, tokenizer=smollm2.tokenizer, record=record, model_card=False)
    return path


def _launch(demo) -> str:
    demo.queue()
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True, show_error=False
    )
    return url


@pytest.fixture(scope="module")
def app_url(space, pruned_dir):
    demo = space.create_app(str(pruned_dir), "smollm2-135m")
    yield _launch(demo)
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def broken_url(space, tmp_path_factory):
    """The app for a 'model' that cannot load: a directory without config.json."""
    not_a_model = tmp_path_factory.mktemp("space-broken") / "not-a-model"
    not_a_model.mkdir()
    demo = space.create_app(str(not_a_model))
    yield _launch(demo)
    demo.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium, installed with apt-get when it is missing."""
    if not Path(CHROMIUM).exists():
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            pytest.skip(f"{CHROMIUM} is missing and apt-get is unavailable (or not root) to install chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
            try:
                result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            except subprocess.TimeoutExpired:
                pytest.skip(f"`{' '.join(command)}` timed out")
            if result.returncode != 0:
                pytest.skip(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()[-300:]}")
        if not Path(CHROMIUM).exists():
            pytest.skip(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _generate(client, prompt=PROMPT, max_new_tokens=NEW_TOKENS, temperature=0.0, top_p=1.0, seed=0, chat=False):
    return client.predict(prompt, max_new_tokens, temperature, top_p, seed, chat, api_name="/generate")


def _direct_greedy(loaded: hf_prune.LoadedModel, prompt: str, max_new_tokens: int) -> str:
    import torch

    inputs = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return loaded.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------------- generation


def test_generate_is_side_by_side_and_greedy_matches_model_generate(client, pruned_dir, smollm2):
    pruned_text, pruned_stats, base_text, base_stats, details = _generate(client)

    assert pruned_text.strip() and base_text.strip()
    assert "tokens/s" in pruned_stats and "tokens/s" in base_stats and "Memory" in pruned_stats
    assert details["settings"]["greedy"] is True and details["error"] is None
    for role, text in (("pruned", pruned_text), ("base", base_text)):
        run = details[role]
        assert run["text"] == text
        assert 1 <= run["new_tokens"] <= NEW_TOKENS and run["tokens_per_s"] > 0 and run["seconds"] > 0
        assert run["finish_reason"] in {"eos", "length"} and run["kv_cache_bytes"] > 0 and run["weights_bytes"] > 0
    assert details["pruned"]["parameters"] < details["base"]["parameters"]
    assert details["pruned"]["kv_cache_bytes_per_token"] < details["base"]["kv_cache_bytes_per_token"]
    assert details["speedup"] > 0

    # Greedy decoding in the app is exactly what transformers' generate gives, for both models.
    assert pruned_text == _direct_greedy(hf_prune.load_model(pruned_dir), PROMPT, NEW_TOKENS)
    assert base_text == _direct_greedy(smollm2, PROMPT, NEW_TOKENS)


def test_sampling_is_reproducible_with_a_seed(client):
    first = _generate(client, "Write a haiku about trees.", 6, temperature=0.9, top_p=0.9, seed=7, chat=True)
    again = _generate(client, "Write a haiku about trees.", 6, temperature=0.9, top_p=0.9, seed=7, chat=True)
    assert first[0] == again[0] and first[2] == again[2]
    assert first[4]["settings"] == {
        "max_new_tokens": 6, "temperature": 0.9, "top_p": 0.9, "seed": 7, "chat_template": True, "greedy": False
    }
    assert first[4]["pruned"]["chat_template"] is True


def test_requests_are_bounded(client, space):
    from gradio_client.exceptions import AppError

    # Gradio refuses slider values outside the bounds the page shows, also through the API.
    with pytest.raises(AppError, match="minimum"):
        _generate(client, max_new_tokens=0)
    with pytest.raises(AppError, match="maximum"):
        _generate(client, max_new_tokens=space.MAX_NEW_TOKENS + 1)

    long_prompt = "pruning " * 400  # 3,200 characters: cut to 2,000, and those to their last 512 tokens at most
    _, _, _, _, details = _generate(client, long_prompt, max_new_tokens=1)
    assert details["settings"]["max_new_tokens"] == 1
    assert details["pruned"]["new_tokens"] == 1 and details["base"]["new_tokens"] == 1
    assert details["prompt"] == long_prompt[: space.MAX_PROMPT_CHARS]
    assert details["pruned"]["prompt_tokens"] <= space.MAX_PROMPT_TOKENS + 1

    # The app's own bounds, for callers of run_generation and values Gradio lets through.
    settings = space.Settings.bounded("hi", 10_000, 99.0, -1.0, -5, 1)
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.seed) == (
        space.MAX_NEW_TOKENS, space.MAX_TEMPERATURE, 0.01, 0
    )
    assert space.Settings.bounded(None, "x", None, None, None, False).max_new_tokens == space.DEFAULT_NEW_TOKENS
    assert len(space.Settings.bounded("x" * 5000, 1, 0, 1, 0, False).prompt) == space.MAX_PROMPT_CHARS


def test_empty_prompt_is_refused_readably(client):
    pruned_text, pruned_stats, base_text, _, details = _generate(client, "   ")
    assert pruned_text == base_text == ""
    assert "prompt" in details["error"] and "Type a prompt" in pruned_stats


# ---------------------------------------------------------------------------------------------------------- profile


def test_profile_matches_pruning_json(client, pruned_dir):
    record = json.loads((pruned_dir / "pruning.json").read_text())
    profile = client.predict(api_name="/profile")

    assert profile["errors"] == [] and profile["base_model"] == "smollm2-135m"
    facts = profile["record"]
    for key in (
        "method", "source_model", "format", "params_before", "params_after", "layers_before", "layers_after",
        "removed_layers", "kv_cache_bytes_per_token_before", "kv_cache_bytes_per_token_after", "dtype",
        "width_kept", "calibration", "hf_prune_version",
    ):
        assert facts[key] == record[key], key
    assert facts["perplexity"] == record["evaluation"]["perplexity"] and facts["has_layer_scores"] is True

    # What the loaded models measure agrees with the record.
    assert profile["models"]["pruned"]["parameters"] == record["params_after"]
    assert profile["models"]["base"]["parameters"] == record["params_before"]
    assert profile["models"]["pruned"]["kv_cache_bytes_per_token"] == record["kv_cache_bytes_per_token_after"]
    assert profile["models"]["base"]["kv_cache_bytes_per_token"] == record["kv_cache_bytes_per_token_before"]

    # The chart's rows: one per source layer, scores from the record, kept widths relative to the source.
    layers = profile["layers"]
    assert [row["source_layer"] for row in layers] == list(range(30))
    assert [row["score"] for row in layers] == record["scores"]["layer_scores"]
    assert [row["source_layer"] for row in layers if not row["kept"]] == REMOVED
    assert (layers[2]["heads"], layers[2]["source_heads"], layers[2]["kv_heads"], layers[2]["source_kv_heads"]) == (6, 9, 2, 3)
    assert layers[2]["kv_heads_kept"] == pytest.approx(2 / 3)
    assert (layers[5]["intermediate_size"], layers[5]["source_intermediate_size"]) == (1024, 1536)
    assert layers[5]["mlp_kept"] == pytest.approx(2 / 3) and layers[20]["mlp_kept"] == 0.0


def test_profile_figure_and_facts_render(space, pruned_dir):
    models = space.load_models(str(pruned_dir), "smollm2-135m")  # cached: no second load
    figure = space.profile_figure(models)
    assert len(figure.axes) == 2
    assert "26 of 30 layers kept" in figure.axes[0].get_title()
    facts = space.facts_markdown(models)
    for text in ("block-influence", "134.5M", "119.2M", "20, 21, 22, 23", "Perplexity", "abababababababab"):
        assert text in facts


# --------------------------------------------------------------------------------------------------------- failures


def test_model_that_fails_to_load_is_reported_readably(broken_url):
    client = gradio_client.Client(broken_url, verbose=False)
    profile = client.predict(api_name="/profile")
    assert len(profile["errors"]) == 1
    assert "Could not load the pruned model" in profile["errors"][0] and "no config.json" in profile["errors"][0]
    assert profile["record"] is None and profile["models"]["pruned"] is None

    pruned_text, pruned_stats, base_text, _, details = _generate(client)
    assert pruned_text == base_text == "" and "no config.json" in details["error"]
    assert "no config.json" in pruned_stats

    import httpx

    config = httpx.get(broken_url.rstrip("/") + "/config", timeout=30).text
    assert "no config.json" in config and "Traceback" not in config


def test_source_that_fails_to_load_leaves_the_pruned_model_running(space, pruned_dir, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    models = space.load_models(str(pruned_dir), str(tmp_path / "not-a-model"))
    assert models.pruned is not None and models.base is None and not models.errors
    assert "Could not load the source model" in models.notes[0] and "no config.json" in models.notes[0]
    outputs = list(space.run_generation(models, PROMPT, 2, 0.0, 1.0, 0, False))
    pruned_text, _, base_text, base_stats, details = outputs[-1]
    assert details["pruned"]["new_tokens"] >= 1 and details["base"] is None
    assert base_text == "" and "No source model" in base_stats


def test_space_runs_as_a_script_from_env_vars_and_falls_back_to_the_builtin_source(pruned_dir, tmp_path):
    """`python spaces/app.py` with the Space's settings; the Hub is off, so the source is the built-in copy."""
    port = _free_port()
    env = {
        **os.environ,
        "HF_PRUNE_MODEL": str(pruned_dir),
        "HF_HUB_OFFLINE": "1",
        "HF_PRUNE_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("HF_PRUNE_BASE_MODEL", None)
    with _serving([sys.executable, str(SPACE_DIR / "app.py")], env, tmp_path, port) as client:
        profile = client.predict(api_name="/profile")
        assert profile["model"] == str(pruned_dir) and profile["errors"] == []
        assert profile["base_model"] == "smollm2-135m"
        assert any("built-in copy" in note for note in profile["notes"])
        *_, details = _generate(client, max_new_tokens=3)
        assert details["pruned"]["new_tokens"] >= 1 and details["base"]["new_tokens"] >= 1


@contextlib.contextmanager
def _serving(command: list[str], env: dict, tmp_path: Path, port: int):
    """Run the app as a real process until it answers on 127.0.0.1:`port`; yield a gradio_client for it."""
    import httpx

    log = tmp_path / "app.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert process.poll() is None, f"the app exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(url + "config", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the app did not start: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        yield gradio_client.Client(url, verbose=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_hf_prune_demo_serves_the_app_locally(tiny_checkpoint, tmp_path):
    """`hf-prune demo DIR --base MODEL`: the same app, on 127.0.0.1, comparing a pruned tiny Llama with its source."""
    model = hf_prune.load_model(str(tiny_checkpoint))
    pruned = tmp_path / "tiny-pruned"
    hf_prune.save_pruned(
        hf_prune.remove_layers(model.model, [1]), pruned, tokenizer=model.tokenizer, model_card=False,
        record=PruningRecord.from_model(hf_prune.remove_layers(model.model, [1]), method="block-influence",
                                        source_model=str(tiny_checkpoint)),
    )
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "hf_prune", "demo", str(pruned), "--base", str(tiny_checkpoint), "--port", str(port)]
    with _serving(command, env, tmp_path, port) as client:
        profile = client.predict(api_name="/profile")
        assert profile["model"] == str(pruned) and profile["base_model"] == str(tiny_checkpoint)
        assert profile["errors"] == [] and profile["record"]["method"] == "block-influence"
        *_, details = _generate(client, prompt="The statement", max_new_tokens=4)
        assert details["pruned"]["new_tokens"] >= 1 and details["base"]["new_tokens"] >= 1
        assert details["pruned"]["parameters"] < details["base"]["parameters"]


def test_hf_prune_demo_refuses_what_is_not_a_model(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hf_prune", "demo", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "neither a checkpoint directory nor a Hub id" in result.stderr


# ----------------------------------------------------------------------------------------------------------- browser


def _page_text_has_no_traceback(page) -> None:
    assert "Traceback" not in page.inner_text("body")


def test_browser_generates_side_by_side(browser, app_url, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(app_url) else None)
    page.goto(app_url, wait_until="load", timeout=120_000)

    # Gradio renders the page in the browser after load; on a busy machine that takes a while.
    page.locator("#prompt textarea").wait_for(timeout=120_000)
    page.locator("#prompt textarea").fill(PROMPT)
    tokens = page.locator("#max-new-tokens input[type=number]")
    tokens.fill(str(NEW_TOKENS))
    tokens.press("Enter")
    page.locator("#generate").click()
    page.wait_for_function(
        """() => ['#pruned-stats', '#base-stats'].every(selector => {
            const text = document.querySelector(selector)?.innerText || '';
            return text.includes('end of sequence') || text.includes('token limit');
        })""",
        timeout=120_000,
    )
    pruned = page.locator("#pruned-output textarea").input_value()
    base = page.locator("#base-output textarea").input_value()
    screenshot = tmp_path / "space.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    assert pruned.strip() and base.strip()
    assert "tokens/s" in page.locator("#pruned-stats").inner_text()
    assert "tokens/s" in page.locator("#base-stats").inner_text()
    assert "Removed layers" in page.locator("#facts").inner_text()
    assert page.locator("#profile-plot img").count() >= 1 or page.locator("#profile-plot svg").count() >= 1
    _page_text_has_no_traceback(page)
    assert outside == [], f"the page fetched from outside the app: {outside}"
    page.close()


def test_browser_shows_a_load_error_readably(browser, broken_url):
    page = browser.new_page()
    page.goto(broken_url, wait_until="load", timeout=120_000)
    page.locator("#load-status").wait_for(timeout=120_000)
    status = page.locator("#load-status").inner_text()
    assert "Could not load the pruned model" in status and "no config.json" in status
    assert page.locator("#generate").is_disabled()
    _page_text_has_no_traceback(page)
    page.close()


# ------------------------------------------------------------------------------------------------------- the card


CARD_VALUES = {
    "title": "SmolLM2 26 layers, pruned",
    "license": "apache-2.0",
    "short_description": "SmolLM2-135M pruned with hf-prune, next to its source",
    "model_id": "someone/smollm2-135m-26l",
    "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "space_id": "someone/smollm2-135m-26l-demo",
}


def _fill(template: str, values: dict[str, str]) -> str:
    """Render the Space card template as the pusher does (Jinja; `hf_prune.hub.space.render_space_card`)."""
    import jinja2

    return jinja2.Template(template, undefined=jinja2.StrictUndefined).render(**values)


@pytest.mark.parametrize("quote", [False, True], ids=["plain", "json-quoted"])
def test_space_readme_front_matter_parses_with_the_required_keys(quote):
    from huggingface_hub import SpaceCard

    template = (SPACE_DIR / "README.md").read_text(encoding="utf-8")
    values = {name: json.dumps(value) if quote else value for name, value in CARD_VALUES.items()}
    text = _fill(template, values)
    assert "{{" not in text and "}}" not in text and "{%" not in text

    data = SpaceCard(text).data.to_dict()
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "pinned", "license",
                "short_description", "models"):
        assert key in data, key
    assert data["title"] == CARD_VALUES["title"] and data["license"] == "apache-2.0"
    assert data["sdk"] == "gradio" and data["app_file"] == "app.py" and data["pinned"] is False
    assert (SPACE_DIR / data["app_file"]).is_file()
    assert str(data["sdk_version"]).split(".")[0] == gr.__version__.split(".")[0] == "6"
    assert data["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert data["colorTo"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert data["short_description"] == CARD_VALUES["short_description"] and len(data["short_description"]) <= 60
    assert data["models"] == [CARD_VALUES["model_id"], CARD_VALUES["base_model_id"]]


def test_space_settings_come_from_env_vars_else_the_card(space, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(_fill((SPACE_DIR / "README.md").read_text(encoding="utf-8"), CARD_VALUES), encoding="utf-8")
    assert space.space_settings({}, readme) == (CARD_VALUES["model_id"], CARD_VALUES["base_model_id"])
    assert space.space_settings({"HF_PRUNE_MODEL": "a/b"}, readme) == ("a/b", None)
    assert space.space_settings({"HF_PRUNE_MODEL": "a/b", "HF_PRUNE_BASE_MODEL": "smollm2-135m"}, readme) == (
        "a/b",
        "smollm2-135m",
    )
    # The unfilled template names no model.
    assert space.space_settings({}, SPACE_DIR / "README.md") == ("", None)


def test_space_requirements_name_hf_prune_and_leave_gradio_to_the_sdk():
    lines = [
        line.split("#")[0].strip()
        for line in (SPACE_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ]
    names = [line.split(">")[0].split("=")[0].split("<")[0].strip().lower() for line in lines if line]
    assert "hf-prune" in names and "gradio" not in names
