"""The llama.cpp runtime: what is its own (tokenizer agreement, selection, slot reuse, serving).

Every feature's behaviour on it (schemas, regex, tools, sampling, logprobs, stop, streaming,
batching, cancellation) is checked by the modules that run on every runtime
(``model = on_every_runtime()``: test_api_fields, test_tools, test_response_format, test_batching).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

import constrain
from constrain.errors import ModelLoadError
from constrain.loading import _gguf_cache_folder, choose_runtime, embedded_gguf_path

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


def test_llama_cpp_and_constrain_share_the_vocabulary(llama_model):
    """Masks are built over constrain's token ids and llama.cpp runs them: every id must be the
    same bytes in both."""
    tokenizer = llama_model.tokenizer
    byte_of = _byte_level_alphabet()  # SmolLM2 is byte-level BPE
    special = set(tokenizer.all_special_ids)
    differ = []
    for token, text in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        ours = text.encode() if token in special else bytes(byte_of[c] for c in text)
        if llama_model.runtime.token_bytes(token) != ours:
            differ.append(token)
    assert differ == []
    assert llama_model.runtime.vocab_size == llama_model.vocab_size == len(tokenizer)


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte: printable Latin-1 bytes stand for
    themselves, the other bytes take the characters from U+0100 on, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in keep]
    return {**{chr(b): b for b in keep}, **{chr(256 + n): b for n, b in enumerate(others)}}


def test_llama_cpp_tokenizes_prompts_as_constrain_does(llama_model):
    """Both split prompts the same way, special tokens included (constrain's split is what both
    runtimes are fed). One known corner differs: a space before a numeric symbol such as "½"
    (llama.cpp's SmolLM2 pre-tokenizer keeps it apart, transformers' GGUF reader joins them)."""
    tokenizer = llama_model.tokenizer
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": PERSON}}]
    texts = [
        "plain words, numbers 12345 and 3.14159e-10",
        '{"nested": {"list": [1, -2, null, true, "x\\ty"]}, "ünïcödé": "日本語 🙂 1½"}',
        "   leading spaces\n\n\ttabs and\r\nCRLF  ",
        tokenizer.apply_chat_template([{"role": "user", "content": "Name a person."}], tokenize=False,
                                      add_generation_prompt=True),
        tokenizer.apply_chat_template([{"role": "system", "content": "Use tools."},
                                       {"role": "user", "content": "Weather in Paris?"}], tools=tools,
                                      tokenize=False, add_generation_prompt=True),
    ]
    for text in texts:
        assert llama_model.runtime.tokenize(text) == tokenizer.encode(text, add_special_tokens=False), text
    assert llama_model.runtime.tokenize(" ½") != tokenizer.encode(" ½", add_special_tokens=False)


def test_runtime_choice(llama_model, transformers_model):
    gguf = embedded_gguf_path()
    assert choose_runtime("auto", None) == "llama.cpp"  # installed, and the embedded model is a GGUF
    assert choose_runtime("transformers", None) == "transformers"
    folder = _gguf_cache_folder(gguf)  # the transformers conversion of the same file
    assert choose_runtime("auto", str(folder)) == "transformers"
    with pytest.raises(ModelLoadError, match="runs .gguf files") as caught:
        choose_runtime("llama.cpp", str(folder))
    assert caught.value.param == "runtime"
    with pytest.raises(ModelLoadError, match="must be one of") as caught:
        constrain.load(runtime="vllm")  # type: ignore[arg-type]
    assert caught.value.param == "runtime"
    assert type(llama_model.runtime).__name__ == "LlamaCppRuntime"
    assert type(transformers_model.runtime).__name__ == "TransformersRuntime"
    # llama.cpp also ends at the GGUF's end-of-text token (0), as llama-server does
    assert transformers_model.eos_token_ids <= llama_model.eos_token_ids
    assert llama_model.capabilities()["images"] is False


def test_a_shared_prompt_prefix_is_computed_once(llama_model):
    """A freed slot keeps its cells: the next prompt that starts the same way skips that part,
    and the answer is the one a fresh slot gives."""
    system = "You are a careful assistant who answers in JSON. " * 20
    ask = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "A person, please."}],
           "response_format": {"type": "json", "value": PERSON}, "max_tokens": 40, "temperature": 0}
    first = llama_model.chat_completion(**ask).choices[0].message.content
    before = llama_model.runtime.reused_tokens
    second = llama_model.chat_completion(**ask).choices[0].message.content
    reused = llama_model.runtime.reused_tokens - before
    prompt_tokens = len(llama_model.prepare(ask).job.prompt_ids)
    assert reused >= prompt_tokens - 1 - 16, (reused, prompt_tokens)
    assert second == first
    jsonschema.validate(json.loads(first), PERSON)


def test_a_prompt_gives_the_same_logits_however_it_is_cut(llama_model):
    """Same seed, same output: a prompt run whole, token by token, resumed from a kept prefix or
    beside other prompts ends in bit-identical logits (llama.cpp's attention kernel changes at
    64 rows of one sequence; the runtime stays below that)."""
    import numpy as np

    from constrain.decoding.runtimes.base import Feed
    from constrain.decoding.runtimes.llama_cpp import LlamaCppRuntime
    from constrain.loading import embedded_gguf_path

    runtime = LlamaCppRuntime(embedded_gguf_path(), slots=3, threads=1)
    try:
        text = "The quick brown fox jumps over the lazy dog, then runs into the forest. " * 20
        tokens = runtime.tokenize(text)[:300]

        def last_logits(*cuts: int, beside: list[int] | None = None) -> np.ndarray:
            runtime.reset()
            runtime.start(1, [], keep=0)
            if beside:
                runtime.start(2, [], keep=0)
            edges = [0, *cuts, len(tokens)]
            for a, b in zip(edges, edges[1:], strict=False):
                feeds = [Feed(1, tokens[a:b])] + ([Feed(2, beside)] if beside and a == 0 else [])
                out = runtime.step(feeds).last[0].numpy().copy()
            return out

        whole = last_logits()
        assert np.array_equal(whole, last_logits(299))
        assert np.array_equal(whole, last_logits(*range(1, 300)))
        assert np.array_equal(whole, last_logits(100, 230))
        assert np.array_equal(whole, last_logits(beside=tokens[7:207]))
        # the same through a slot's kept cells: start() reuses all but the last token
        runtime.drop(1)
        assert runtime.start(3, tokens) == 299
        resumed = runtime.step([Feed(3, tokens[299:])]).last[0].numpy()
        assert np.array_equal(whole, resumed)
    finally:
        runtime.close()


def test_served_on_llama_cpp_to_the_openai_sdk(llama_model):
    from openai import OpenAI

    from constrain.server import create_app
    from tests.server.conftest import ServerThread

    server = ServerThread(create_app(llama_model)).start()
    try:
        client = OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
        out = client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Give me a person."}], max_tokens=60, seed=3,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
        jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)
        tools = [{"type": "function", "function": {"name": "add_person", "parameters": PERSON}}]
        called = client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Add Ann, 31."}], tools=tools, tool_choice="required",
            max_tokens=60, temperature=0)
        call = called.choices[0].message.tool_calls[0]
        assert call.function.name == "add_person"
        jsonschema.validate(json.loads(call.function.arguments), PERSON)
        text = ""
        for chunk in client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "A year?"}], stream=True, max_tokens=8,
                response_format={"type": "json_schema", "json_schema": {"name": "y", "schema": {
                    "type": "integer", "minimum": 1900, "maximum": 2100}}}):
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        assert 1900 <= int(text) <= 2100
        assert llama_model.runtime.memory()["kv_buffer_bytes"] > 0
    finally:
        server.stop()
