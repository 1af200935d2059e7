#!/usr/bin/env bash
# The whole test suite (real model, real clients, real HTTP server on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check constrain tests benchmarks
exec .venv/bin/python -m pytest "$@"
