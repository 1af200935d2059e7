"""The second packaged model, Gemma 3 270M (a GGUF in four PyPI chunk packages), by its short name:
it loads on the default runtime (llama.cpp where installed, else transformers' GGUF loader),
constrained output on it is valid, and a server serves it beside the embedded model."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

import constrain
from constrain.errors import ModelLoadError

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def gemma():
    return constrain.load("gemma-3-270m", max_batch=4)


def gemma_context(model: constrain.Model) -> int:
    """Gemma 3 270M is trained for 32,768 tokens; on llama.cpp each of the 4 sequences gets its
    share of 65,536 KV cells, and the model says so rather than fail past it."""
    return 16384 if type(model.runtime).__name__ == "LlamaCppRuntime" else 32768


def test_gemma_loads_by_its_short_name(gemma):
    assert gemma.name == "gemma-3-270m"
    assert gemma.vocab_size > 200_000  # Gemma's own vocabulary, not the embedded model's
    caps = gemma.capabilities()
    assert caps["context_length"] == gemma_context(gemma) and caps["images"] is False


def test_gemma_output_matches_the_schema(gemma):
    out = gemma.chat_completion([{"role": "user", "content": "Name: Ada. Age: 36.\nJSON:"}],
                                response_format={"type": "json", "value": SCHEMA}, max_tokens=32, temperature=0)
    jsonschema.validate(json.loads(out.choices[0].message.content), SCHEMA)
    regex = gemma.chat_completion([{"role": "user", "content": "A date:"}], max_tokens=16, temperature=0,
                                  response_format={"type": "regex", "value": r"20\d\d-[01]\d-[0-3]\d"})
    assert len(regex.choices[0].message.content) == 10


def test_served_beside_the_embedded_model(model, gemma, start_server):
    server = start_server({"smol": model, "gemma": gemma}, cache_size=0)
    cards = {card["id"]: card for card in httpx.get(f"{server.base_url}/v1/models").json()["data"]}
    assert cards["gemma"]["context_length"] == gemma_context(gemma) and cards["smol"]["context_length"] == 8192
    body = {"model": "gemma", "messages": [{"role": "user", "content": "Name: Bo. Age: 7.\nJSON:"}],
            "max_tokens": 32, "temperature": 0, "response_format": {"type": "json", "value": SCHEMA}}
    reply = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    jsonschema.validate(json.loads(reply.json()["choices"][0]["message"]["content"]), SCHEMA)


def test_an_unknown_short_name_lists_the_packaged_ones():
    with pytest.raises(ModelLoadError, match="gemma-3-270m"):
        constrain.load("gemma-9")
