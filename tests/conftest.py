"""Shared fixtures: the embedded model, loaded once per test session."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CONSTRAIN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


RUNTIMES = ("transformers", "llama.cpp")


@pytest.fixture(scope="session")
def transformers_model():
    import constrain

    return constrain.load(runtime="transformers")


@pytest.fixture(scope="session")
def model(transformers_model):
    """The embedded model on transformers; modules that run on every runtime override this
    with :func:`on_every_runtime`."""
    return transformers_model


@pytest.fixture(scope="session")
def llama_model():
    """The embedded model on llama.cpp (the test command installs it: scripts/llama_cpp.sh)."""
    import constrain
    from constrain.decoding.runtimes.llama_cpp import available

    if not available():
        pytest.skip("llama-cpp-python is not installed (bash scripts/llama_cpp.sh installs it)")
    return constrain.load(runtime="llama.cpp")


def on_every_runtime():
    """A module-level ``model`` fixture over each runtime: ``model = on_every_runtime()``."""

    @pytest.fixture(scope="module", params=RUNTIMES)
    def model(request):
        return request.getfixturevalue("transformers_model" if request.param == "transformers" else "llama_model")

    return model


@pytest.fixture(scope="session")
def tokenizer(transformers_model):
    """The embedded model's tokenizer (the same on every runtime)."""
    return transformers_model.tokenizer


def read_jsonl_gz(name: str) -> list[dict]:
    path = SHARED / "data" / name
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set CONSTRAIN_SHARED)")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def mask_walk(tokenizer, schema, text: str, **options) -> bool:
    """Walk ``text`` token by token through the masks (each token must be in the mask, not just
    consumed), then ask for EOS. ``options`` go to ``compile_constraint``."""
    import numpy as np

    from constrain import compile_constraint

    compiled = compile_constraint({"type": "json", "value": schema}, tokenizer, **options)
    matcher = compiled.matcher()
    bits = np.zeros((compiled.vocab_size + 31) // 32, dtype=np.int32)
    for token in tokenizer.encode(text, add_special_tokens=False):
        matcher.fill_bitmask(bits)
        if not (int(bits.view(np.uint32)[token >> 5]) >> (token & 31)) & 1 or not matcher.consume(token):
            return False
    return matcher.is_accepting()
