"""The pytest plugin, run on small test projects with pytester: options, fixtures, turning it off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_test_file() -> str:
    """The README's example test file (the block that starts with ``# test_app.py``)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return next(block for block in blocks if block.startswith("# test_app.py"))


def test_plugin_is_registered_with_its_option(pytester: pytest.Pytester):
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(["*--constrain-model=PATH*"])
    result.stdout.fnmatch_lines(["*constrain_model (string)*"])


def test_fixtures_are_listed(pytester: pytest.Pytester):
    result = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    for name in ("constrain_model", "constrain_server", "openai_client", "inference_client"):
        result.stdout.fnmatch_lines([f"{name} *"])


def test_can_be_turned_off(pytester: pytest.Pytester):
    pytester.makepyfile("def test_uses(constrain_model):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:constrain", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'constrain_model' not found*"])


@pytest.mark.parametrize("how", ["option", "ini"])
def test_model_option_and_ini_setting_reach_the_fixture(pytester: pytest.Pytester, how: str):
    pytester.makepyfile("def test_uses(constrain_model):\n    pass\n")
    args = ["-p", "no:cacheprovider"]
    if how == "option":
        args.append("--constrain-model=/no/such/model.gguf")
    else:
        pytester.makeini("[pytest]\nconstrain_model = /no/such/model.gguf\n")
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ModelLoadError*/no/such/model.gguf*"])


@pytest.mark.model
def test_fixtures_end_to_end(pytester: pytest.Pytester):
    """One inner session (one model load): the README's example test file, plus every fixture."""
    pytester.makepyfile(test_app=_readme_test_file())
    pytester.makepyfile(
        test_fixtures='''
        import json
        import os

        import httpx
        from constrain.testing import assert_valid

        SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}


        def test_model(constrain_model):
            out = constrain_model.chat_completion(
                [{"role": "user", "content": "Is water wet?"}],
                response_format={"type": "json", "value": SCHEMA}, max_tokens=12, temperature=0)
            assert_valid(json.loads(out.choices[0].message.content), SCHEMA)


        def test_server(constrain_server):
            assert constrain_server.base_url == constrain_server.url + "/v1"
            assert constrain_server.url.startswith("http://127.0.0.1:")
            assert httpx.get(constrain_server.url + "/health").status_code == 200
            anonymous = httpx.post(constrain_server.base_url + "/chat/completions", json={"messages": []})
            assert anonymous.status_code == 401  # the key is required
            assert constrain_server.env()["OPENAI_API_KEY"] == constrain_server.api_key


        def test_openai_client_is_deterministic(openai_client):
            def ask():
                return openai_client.chat.completions.create(
                    model="any", messages=[{"role": "user", "content": "Is water wet?"}],
                    response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
                    max_tokens=12, temperature=0, extra_headers={"x-use-cache": "false"},
                ).choices[0].message.content

            first = ask()
            assert_valid(json.loads(first), SCHEMA)
            assert ask() == first


        def test_inference_client(inference_client):
            out = inference_client.chat_completion(
                messages=[{"role": "user", "content": "Is water wet?"}],
                response_format={"type": "json", "value": SCHEMA}, max_tokens=12, temperature=0)
            assert_valid(json.loads(out.choices[0].message.content), SCHEMA)
        ''',
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
