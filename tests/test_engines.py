"""The engine boundary: the Matcher API of both engines, and the compiled-constraint cache.

The decode loop trusts these contracts blindly (bit layout, consume's return value,
forced tokens, rollback), so each is checked against an independent computation.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from constrain.constraints import compile_constraint, get_engine
from constrain.decoding import decode
from constrain.decoding.sampling import SamplingParams, allocate_token_bitmask
from constrain.engines import EngineGrammar
from constrain.errors import InvalidRequestError, UnsupportedSchemaError
from constrain.requests import parse_request
from constrain.tools import plan_tools

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
VALID = {"name": "Bob", "age": 42, "tags": ["a"]}
INVALID = {"name": "Bob", "age": "forty"}


def allowed_ids(bitmask: np.ndarray, vocab_size: int) -> set[int]:
    """Unpack by the documented rule: token t is allowed iff bit t % 32 of word t // 32 is set."""
    return {t for t in range(vocab_size) if (int(bitmask[t // 32]) >> (t % 32)) & 1}


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def walk(matcher, tokens: list[int], vocab_size: int) -> bool:
    """Feed ``tokens`` checking each against the mask first; True if all were consumed."""
    bitmask = allocate_token_bitmask(vocab_size)
    for token in tokens:
        matcher.fill_bitmask(bitmask)
        in_mask = (int(bitmask[token // 32]) >> (token % 32)) & 1
        ok = matcher.consume(token)
        assert bool(in_mask) == ok, f"mask and consume disagree on token {token}"
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- llguidance


@pytest.fixture(scope="module")
def llg(tokenizer):
    return get_engine("llguidance", tokenizer)


def test_llguidance_bitmask_layout_matches_the_vocabulary(llg, tokenizer):
    matcher = llg.compile(EngineGrammar("regex", "a|b")).matcher()
    bitmask = allocate_token_bitmask(llg.vocab_size)
    bitmask[:] = 0
    matcher.fill_bitmask(bitmask)
    # The only tokens whose text fits "a|b" are the single-character tokens "a" and "b".
    expected = {tokenizer.convert_tokens_to_ids(c) for c in "ab"}
    assert allowed_ids(bitmask, llg.vocab_size) == expected


def test_llguidance_consume_rejects_and_reports(llg, tokenizer):
    matcher = llg.compile(EngineGrammar("regex", "[0-9]+")).matcher()
    assert matcher.consume(ids_of(tokenizer, "7")[0])
    assert matcher.error() is None
    assert matcher.is_accepting()
    assert not matcher.consume(ids_of(tokenizer, "x")[0])
    assert matcher.error()


def test_llguidance_forced_tokens_are_the_fixed_prefix(llg, tokenizer):
    matcher = llg.compile(EngineGrammar("regex", r"hello world [0-9]")).matcher()
    forced = matcher.forced_tokens()
    assert forced, "a fixed prefix must be fast-forwarded"
    text = tokenizer.decode(forced)
    assert "hello world ".startswith(text) and len(text) >= 5
    # Forced tokens are not consumed by asking; consuming them then succeeds.
    assert matcher.forced_tokens() == forced
    assert walk(matcher, forced, llg.vocab_size)
    assert not matcher.is_accepting()


def test_llguidance_json_schema_accepts_valid_rejects_invalid(llg, tokenizer):
    grammar = llg.compile(EngineGrammar("json_schema", SCHEMA))
    good = grammar.matcher()
    assert walk(good, ids_of(tokenizer, json.dumps(VALID, separators=(",", ":"))), llg.vocab_size)
    assert good.is_accepting() and good.is_stopped()
    bad = grammar.matcher()
    assert not walk(bad, ids_of(tokenizer, json.dumps(INVALID, separators=(",", ":"))), llg.vocab_size)


def test_llguidance_rollback_restores_the_mask(llg, tokenizer):
    matcher = llg.compile(EngineGrammar("json_schema", SCHEMA)).matcher()
    tokens = ids_of(tokenizer, '{"name":"Bo')
    assert walk(matcher, tokens[:-1], llg.vocab_size)
    before = allocate_token_bitmask(llg.vocab_size)
    matcher.fill_bitmask(before)
    assert matcher.consume(tokens[-1])
    after = allocate_token_bitmask(llg.vocab_size)
    matcher.fill_bitmask(after)
    assert not np.array_equal(before, after)
    matcher.rollback(1)
    again = allocate_token_bitmask(llg.vocab_size)
    matcher.fill_bitmask(again)
    assert np.array_equal(before, again)


# --------------------------------------------------------------------------- cache


def test_compiled_constraint_cache_hit_is_the_same_object(tokenizer):
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
    first = compile_constraint(fmt, tokenizer)
    # An equal request built separately (not the same dict) hits the cache too.
    assert compile_constraint(json.loads(json.dumps(fmt)), tokenizer) is first
    pretty = compile_constraint(fmt, tokenizer, whitespace="pretty")
    assert pretty is not first and pretty.grammar is not first.grammar


# --------------------------------------------------------------------------- outlines_core


@pytest.fixture(scope="module")
def occ(tokenizer):
    pytest.importorskip("outlines_core")
    return get_engine("outlines_core", tokenizer)


def test_outlines_core_schema_accepts_valid_and_rejects_invalid(occ, tokenizer):
    grammar = occ.compile(EngineGrammar("json_schema", SCHEMA))
    good = grammar.matcher()
    assert walk(good, ids_of(tokenizer, json.dumps(VALID, separators=(",", ":"))), occ.vocab_size)
    assert good.is_accepting() and good.is_stopped() and good.error() is None
    bitmask = allocate_token_bitmask(occ.vocab_size)
    good.fill_bitmask(bitmask)
    assert allowed_ids(bitmask, occ.vocab_size) == {occ.eos_token_id}

    bad = grammar.matcher()
    assert not walk(bad, ids_of(tokenizer, json.dumps(INVALID, separators=(",", ":"))), occ.vocab_size)
    assert bad.error() and "outlines_core" in bad.error()


def test_outlines_core_bitmask_layout_forced_tokens_and_rollback(occ, tokenizer):
    matcher = occ.compile(EngineGrammar("regex", "a|b")).matcher()
    bitmask = allocate_token_bitmask(occ.vocab_size)
    matcher.fill_bitmask(bitmask)
    assert allowed_ids(bitmask, occ.vocab_size) == {tokenizer.convert_tokens_to_ids(c) for c in "ab"}

    matcher = occ.compile(EngineGrammar("regex", "xyz[0-9]")).matcher()
    forced = matcher.forced_tokens()
    # Single-token forcing only: "xyz" may be spelled several ways, so what is forced
    # (possibly nothing) must be a prefix and must not have been consumed.
    assert "xyz".startswith(tokenizer.decode(forced))
    assert matcher.forced_tokens() == forced
    tokens = ids_of(tokenizer, "xyz5")
    assert walk(matcher, tokens[:-1], occ.vocab_size)
    before = allocate_token_bitmask(occ.vocab_size)
    matcher.fill_bitmask(before)
    assert matcher.consume(tokens[-1]) and matcher.is_accepting()
    matcher.rollback(1)
    again = allocate_token_bitmask(occ.vocab_size)
    matcher.fill_bitmask(again)
    assert np.array_equal(before, again) and not matcher.is_accepting()


def test_outlines_core_refuses_lark_and_bad_schemas_by_name(occ):
    with pytest.raises(InvalidRequestError, match="outlines_core"):
        occ.compile(EngineGrammar("lark", 'start: "a"'))
    with pytest.raises(UnsupportedSchemaError, match="outlines_core"):
        occ.compile(EngineGrammar("json_schema", {"type": "object", "properties": {"a": {"not": {}}}}))


def test_engines_declare_the_grammar_kinds_they_compile(occ, tokenizer):
    assert get_engine("llguidance", tokenizer).grammar_kinds == {"json_schema", "regex", "lark"}
    assert occ.grammar_kinds == {"json_schema", "regex"}


def test_tools_ask_the_engine_for_lark_grammars(model, occ):
    planner = dataclasses.replace(model.planner, engine="outlines_core")
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    request = parse_request({"messages": [{"role": "user", "content": "Hi"}], "tools": [tool]})
    with pytest.raises(InvalidRequestError, match="needs a Lark grammar engine.*'outlines_core'") as info:
        plan_tools(planner, request)
    assert info.value.param == "tools"


@pytest.mark.model
def test_outlines_core_drives_the_decode_loop(model, occ):
    compiled = compile_constraint(
        {"type": "regex", "value": "(yes|no), [0-9]{2}"}, model.tokenizer, engine="outlines_core",
        vocab_size=model.vocab_size,
    )
    prompt = model.tokenizer("Answer yes or no and a number: is 7 odd?", add_special_tokens=False)["input_ids"]
    steps = list(decode(
        model.hf_model, model.tokenizer, prompt, compiled, SamplingParams(temperature=0.0),
        max_tokens=16, eos_token_ids=model.eos_token_ids,
    ))
    text = "".join(step.text for step in steps)
    assert steps[-1].finish_reason == "stop"
    compiled.check_output(text)


# --------------------------------------------------------------------------- forward passes


@pytest.mark.model
def test_forced_tokens_cost_no_forward_pass_of_their_own(model):
    from constrain.decoding import DecodeStats

    schema = {
        "type": "object",
        "properties": {"temperature_in_celsius": {"type": "integer"}, "is_it_raining_today": {"type": "boolean"}},
        "required": ["temperature_in_celsius", "is_it_raining_today"],
        "additionalProperties": False,
    }
    compiled = compile_constraint({"type": "json", "value": schema}, model.tokenizer, vocab_size=model.vocab_size)
    prompt = model.tokenizer("Weather in Paris as JSON:", add_special_tokens=False)["input_ids"]
    stats = DecodeStats()
    steps = list(decode(model.hf_model, model.tokenizer, prompt, compiled, SamplingParams(temperature=0.0),
                        max_tokens=64, eos_token_ids=model.eos_token_ids, stats=stats))
    assert steps[-1].finish_reason == "stop"
    compiled.check_output(stats.text)
    assert stats.forced_tokens >= 6  # the key names and the punctuation around them
    # One pass per sampled token (the prefill samples the first); none for forced tokens,
    # and none after the output is complete.
    assert stats.forward_passes == stats.completion_tokens - stats.forced_tokens


@pytest.mark.model
def test_length_limit_costs_no_extra_forward_pass(model):
    from types import SimpleNamespace

    from constrain.decoding import DecodeStats

    # Unconstrained and blind to EOS, so that exactly max_tokens tokens come out.
    free = SimpleNamespace(matcher=lambda: None, vocab_size=model.vocab_size,
                           engine=SimpleNamespace(eos_token_id=-1))
    prompt = model.tokenizer("Count: 1, 2, 3,", add_special_tokens=False)["input_ids"]
    stats = DecodeStats()
    steps = list(decode(model.hf_model, model.tokenizer, prompt, free, SamplingParams(temperature=0.0),  # type: ignore[arg-type]
                        max_tokens=5, eos_token_ids=set(), stats=stats))
    assert steps[-1].finish_reason == "length"
    assert stats.completion_tokens == 5
    assert stats.forward_passes == 5


def test_copies_of_a_grammar_start_afresh_after_one_hits_the_engine_limit(tokenizer):
    """Found by constrain.testing's walker: copies of a start matcher share its lexer's store of
    expressions, so one long output that filled it made every later copy fail at its first mask
    (this schema: each of three seeds failed at once after the first walk)."""
    from constrain.testing import ExampleSampler, examples
    from tests.conftest import read_jsonl_gz

    schema = next(row["schema"] for row in read_jsonl_gz("maskbench.jsonl.gz") if row["name"] == "Github_hard---o62060")
    sampler = ExampleSampler(tokenizer, max_tokens=2000)
    for seed in range(3):
        found = examples(schema, n=3, seed=seed, sampler=sampler, timeout_s=120)
        assert len(found) == 3 and all(len(json.dumps(value)) > 100 for value in found)
