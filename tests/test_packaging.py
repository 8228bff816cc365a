"""The package ships what it needs: every subpackage, the templates, and self-contained architecture files."""

from __future__ import annotations

import ast
import sys
import tomllib

from tests.conftest import REPO_ROOT

ARCHITECTURE = REPO_ROOT / "hf_prune" / "architecture"


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for init in (REPO_ROOT / "hf_prune").rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject's packages: {sorted(found - listed)}"


def test_checkpoint_code_imports_only_torch_and_transformers():
    """The two files copied into pruned checkpoints must run where hf_prune is not installed."""
    allowed = {"torch", "transformers", "huggingface_hub"} | set(sys.stdlib_module_names)
    siblings = {"configuration_pruned", "modeling_pruned"}
    for name in ("configuration_pruned.py", "modeling_pruned.py"):
        tree = ast.parse((ARCHITECTURE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.ImportFrom):
                # Relative imports resolve inside the checkpoint folder: only its sibling file exists there.
                assert node.level == 1 and node.module in siblings, f"{name} imports {'.' * node.level}{node.module}"
                continue
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed, f"{name} imports {module}"


def test_model_card_template_is_found():
    from hf_prune._resources import resource_dir

    assert (resource_dir("model_cards") / "pruned_model.md").is_file()


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "<!-- test command -->" in readme and "<!-- test command -->" in ci
    lines = readme.split("<!-- test command -->", 1)[1].splitlines()
    command = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("```bash"))
    assert "pytest" in command and "pip install" in command
    assert readme.index("<!-- main command -->") < readme.index("<!-- test command -->")


def test_wheel_ships_the_templates_and_the_space(tmp_path):
    """An installed (non-editable) hf-prune must still find model_cards/ and spaces/ for `push` and `demo`."""
    import subprocess
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("hf_prune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "hf_prune/model_cards/pruned_model.md",
        "hf_prune/spaces/app.py",
        "hf_prune/spaces/README.md",
        "hf_prune/spaces/requirements.txt",
        "hf_prune/architecture/modeling_pruned.py",
    ):
        assert required in names, required
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)


def test_checkpoint_code_names_the_supported_transformers_of_pyproject():
    """The range the remote code refuses outside of is the one pip installs within."""
    from hf_prune.architecture.modeling_pruned import MINIMUM_TRANSFORMERS, SUPPORTED_TRANSFORMERS

    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"transformers>={MINIMUM_TRANSFORMERS}" in dependencies
    assert SUPPORTED_TRANSFORMERS.startswith(f">={MINIMUM_TRANSFORMERS.removesuffix('.0')},")


def test_checkpoint_code_refuses_a_too_old_transformers():
    """Under a release older than the supported range, the remote code stops with one line naming the range."""
    import subprocess

    # Load modeling_pruned.py as a checkpoint's remote code is loaded: a module of a package beside its config.
    code = f"""
import importlib.util, sys, types, transformers
transformers.__version__ = "5.14.1"
sys.modules["checkpoint"] = types.ModuleType("checkpoint")
sys.modules["checkpoint"].__path__ = []
sys.modules["checkpoint.configuration_pruned"] = importlib.import_module("hf_prune.architecture.configuration_pruned")
spec = importlib.util.spec_from_file_location("checkpoint.modeling_pruned", {str(ARCHITECTURE / "modeling_pruned.py")!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "UnsupportedTransformersError: transformers 5.14.1 is too old" in last and "supports transformers >=5.15" in last
