"""Shared fixtures: the embedded model, loaded once per test session."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CONSTRAIN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def model():
    import constrain

    return constrain.load()


@pytest.fixture(scope="session")
def tokenizer(model):
    return model.tokenizer


def read_jsonl_gz(name: str) -> list[dict]:
    path = SHARED / "data" / name
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set CONSTRAIN_SHARED)")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]
