"""The README's HTTP examples (curl, InferenceClient, OpenAI) run as written against a live server.

The README says ``http://127.0.0.1:8080``; the test server listens on a free port, so only the
address is rewritten. ``tests/test_readme.py`` leaves these blocks to this file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(os.environ.get("CONSTRAIN_README", Path(__file__).resolve().parents[2] / "README.md"))
TEXT = README.read_text(encoding="utf-8")
README_URL = "http://127.0.0.1:8080"
# The HTTP examples: client code pointed at the README's server (other blocks use clients differently).
PYTHON = [b for b in re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
          if ("InferenceClient(" in b or "OpenAI(" in b) and README_URL in b]
CURL = [b for b in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S) if "curl " in b]


def test_readme_python_http_examples(server, capsys):
    if not PYTHON:
        pytest.fail("README.md has no InferenceClient/OpenAI example")
    namespace: dict = {}
    for block in PYTHON:
        assert README_URL in block
        exec(compile(block.replace(README_URL, server.base_url), str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Paris" in printed


def test_readme_curl_example(server):
    if not CURL:
        pytest.fail("README.md has no curl example")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for block in CURL:
        assert README_URL in block
        run = subprocess.run(
            ["bash", "-c", block.replace(README_URL, server.base_url)], capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        answer = json.loads(run.stdout)
        assert answer["object"] == "chat.completion", answer
        assert answer["choices"][0]["finish_reason"] == "stop"
        json.loads(answer["choices"][0]["message"]["content"])  # the README's examples ask for JSON
