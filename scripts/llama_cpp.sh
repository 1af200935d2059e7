#!/usr/bin/env bash
# The llama.cpp runtime (constrain[llama-cpp]), once: PyPI ships llama-cpp-python as source, so this
# compiles llama.cpp (4 min 46 s on 2 cores here; pip keeps the built wheel in its cache, so a
# new .venv on the same machine takes seconds). Only the library: no examples, tools, server or
# multimodal part.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -c "import llama_cpp" 2>/dev/null && exit 0
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
echo "constrain: building llama.cpp for the llama.cpp runtime (once; about 5 minutes on 2 cores)" >&2
.venv/bin/python -m pip install -q -e ".[llama-cpp]"
