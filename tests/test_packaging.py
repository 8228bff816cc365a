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


# The floors of the package, lowest first: a folder imports only from folders below it. The one arrow that runs up
# is deliberate: `errors` re-exports the pruned architecture's own exception classes, which live in the
# self-contained remote-code files.
FLOORS = ["errors", "architecture", "surgery", "quantization", "provenance", "checkpoint", "calibration",
          "evaluation", "scoring", "healing", "export", "hub", "cli"]
UPWARD_ALLOWED = {("errors", "architecture")}


def _imports_between_modules() -> dict[str, set[str]]:
    """Module -> the hf_prune modules it imports, at any depth (function-level imports count too)."""
    package = REPO_ROOT / "hf_prune"
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {}
    for module, path in modules.items():
        package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package_parts[: len(package_parts) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets |= {known(name) for name in names if name.startswith("hf_prune")} - {None, module}
        edges[module] = targets
    return edges


def test_imports_point_down_the_floors_and_make_no_circle():
    edges = _imports_between_modules()

    def floor(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in FLOORS else None

    found = {floor(module) for module in edges} - {None}
    assert found <= set(FLOORS), f"place these folders in FLOORS: {sorted(found - set(FLOORS))}"
    upward = sorted(
        (floor(a), floor(b), f"{a} -> {b}") for a, targets in edges.items() for b in targets
        if floor(a) and floor(b) and FLOORS.index(floor(b)) > FLOORS.index(floor(a))
    )
    assert [(a, b) for a, b, _ in upward if (a, b) not in UPWARD_ALLOWED] == [], upward

    # No circle between modules (Tarjan's strongly connected components).
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert circles == [], circles
