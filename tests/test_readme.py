"""The README's Python examples run as written (in order, sharing one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


def test_readme_python_examples_run(model, monkeypatch, capsys):
    import constrain

    # The examples call constrain.load(); reuse the session's model instead of loading again.
    monkeypatch.setattr(constrain, "load", lambda *a, **k: model)
    namespace: dict = {}
    for block in BLOCKS:
        if "InferenceClient(" in block or "OpenAI(" in block:
            continue  # the HTTP examples run against a live server in tests/server
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.strip()
