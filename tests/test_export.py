"""constrain.export: grammars for GPU servers (vLLM's guidance backend, SGLang's llguidance backend).

An exported grammar must compile in llguidance alone, as those servers call it, and mask exactly
as ``compile_constraint`` does; what needs constrain's runtime matcher must be refused by name.
No model is loaded: the embedded model's tokenizer is enough.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import llguidance
import numpy as np
import pytest

from constrain import compile_constraint, export_constraint
from constrain.cli import main
from constrain.errors import (
    CompileTimeoutError,
    ConstrainError,
    GenerationError,
    InvalidGrammarError,
    InvalidRegexError,
    InvalidRequestError,
    InvalidSchemaError,
    ToolChoiceError,
    UnsatisfiableSchemaError,
    UnsupportedSchemaError,
)
from constrain.export import NOT_EXPORTABLE
from constrain.plan import Planner
from constrain.requests import parse_request
from constrain.tools import plan_tools
from tests.conftest import SHARED

_SPEC = importlib.util.spec_from_file_location(
    "export_agreement", Path(__file__).resolve().parents[1] / "benchmarks" / "export_agreement.py")
agreement = importlib.util.module_from_spec(_SPEC)
sys.modules["export_agreement"] = agreement  # its dataclasses look their module up
_SPEC.loader.exec_module(agreement)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"enum": ["C", "F"]}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def harness():
    """The embedded model's tokenizer (no weights) and a server-side llguidance tokenizer."""
    from constrain.loading import load_tokenizer

    return agreement.Harness(load_tokenizer())


def server_accepts(harness, grammar: str, text: str, grammar_format: str = "grammar") -> bool:
    """``text`` through the exported grammar in llguidance alone: every token in the mask, then the end."""
    matcher = llguidance.LLMatcher(harness.ll_tokenizer, llguidance.grammar_from(grammar_format, grammar), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    bits = np.zeros((harness.vocab_size + 31) // 32, dtype=np.int32)
    for token in harness.tokenizer.encode(text, add_special_tokens=False):
        matcher.unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)
        if not (int(bits[token >> 5]) >> (token & 31)) & 1 or not matcher.consume_token(token):
            return False
    return matcher.is_accepting()


def same_masks(harness, response_format, grammar: str, text: str, **options) -> bool | None:
    """Walk ``text`` through constrain's matcher and the server's in lockstep: accepted, or None if
    a mask differs at any step."""
    ours = compile_constraint(response_format, harness.tokenizer, **options).matcher()
    accepted, _ = harness.walk(ours, harness.server_matcher(grammar), text)
    return accepted


# --------------------------------------------------------------------------- response_format


PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "born": {"type": "string", "format": "date"},
    "code": {"type": "string", "pattern": "^[A-Z]{2}\\d$"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]},
                                                                   "uniqueItems": True}},
    "required": ["name", "born"], "additionalProperties": False}
PERSON_TEXTS = [
    '{"name":"Ann","born":"2001-02-28"}', '{"name":"Ann","born":"2001-02-30"}', '{"name":"Ann"}',
    '{"name":"Ann","born":"2001-02-28","code":"AB1"}', '{"name":"Ann","born":"2001-02-28","code":"AB12"}',
    '{"name":"Ann","born":"2001-02-28","tags":["a","b"]}', '{"name":"Ann","born":"2001-02-28","tags":["a","a"]}',
    '{"born":"2001-02-28","name":"Ann"}', '{"name":"Ann","born":"2001-02-28","x":1}', '{ "name":"Ann","born":"2001-02-28"}',
]


def test_json_export_is_the_normalised_schema_in_lark(harness):
    exported = export_constraint({"type": "json", "value": PERSON})
    assert exported.kind == "json" and exported.grammar.startswith("start: %json {")
    assert '"x-guidance":{"whitespace_flexible":false}' in exported.grammar
    assert str(exported) == exported.grammar
    assert exported.extra_body() == {"structured_outputs": {"grammar": exported.grammar}}
    assert exported.extra_body("sglang") == {"ebnf": exported.grammar}
    verdicts = [same_masks(harness, {"type": "json", "value": PERSON}, exported.grammar, t) for t in PERSON_TEXTS]
    assert verdicts == [True, False, False, True, False, True, False, False, False, False]
    # SGLang reads the grammar through the "ebnf" door of the same function.
    assert server_accepts(harness, exported.grammar, PERSON_TEXTS[0], "ebnf")


@pytest.mark.parametrize("options", [{"whitespace": "pretty"}, {"close_objects": True}])
def test_json_options_travel(harness, options):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "object"}}}
    exported = export_constraint({"type": "json", "value": schema}, **options)
    for text in ['{"a":1,"b":{}}', '{\n  "a": 1,\n  "b": {}\n}', '{"a":1,"b":{"c":2}}', '{"a":1,"z":2}']:
        assert same_masks(harness, {"type": "json", "value": schema}, exported.grammar, text, **options) is not None


@pytest.mark.parametrize(("pattern", "texts"), [
    (r"\d{3}-[a-z]+/x", ["123-ab/x", "12-ab/x", "١٢٣-ab/x"]),
    ("a\nb|c\\/d", ["a\nb", "c/d", "ab"]),
    (r"(yes|no)\s\w+", ["yes ok", "no\tfine", "maybe ok"]),
])
def test_regex_export_masks_as_constrain(harness, pattern, texts):
    exported = export_constraint({"type": "regex", "value": pattern})
    assert exported.kind == "regex"
    verdicts = [same_masks(harness, {"type": "regex", "value": pattern}, exported.grammar, t) for t in texts]
    assert None not in verdicts and verdicts[0] is True and verdicts[-1] is False


def test_lark_export_is_read_as_lark_by_servers(harness):
    # Without a `start:` line the servers' reader would take the grammar for GBNF.
    grammar = '?start: answer\nanswer: "yes" | "no"\n'
    exported = export_constraint({"type": "grammar", "value": grammar})
    assert exported.kind == "grammar" and exported.grammar.startswith("%llguidance {}\n")
    assert server_accepts(harness, exported.grammar, "yes") and not server_accepts(harness, exported.grammar, "nope")
    from constrain.compiler import load_grammar

    shipped = export_constraint({"type": "grammar", "value": load_grammar("arithmetic")})
    assert shipped.grammar == load_grammar("arithmetic")


@pytest.mark.parametrize(("response_format", "keyword", "param"), [
    ({"type": "json", "value": {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}}},
     "uniqueItems", "response_format.value.properties.tags.uniqueItems"),
    ({"type": "json", "value": {"type": "array", "contains": {"type": "integer"}, "minContains": 2}},
     "contains", "response_format.value.contains"),
    ({"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 3}, "maxContains": 1}}}}},
     "contains", "response_format.json_schema.schema.properties.ids.contains"),
])
def test_runtime_only_constraints_are_refused_by_keyword(harness, response_format, keyword, param):
    compile_constraint(response_format, harness.tokenizer)  # constrain itself enforces them, at run time
    with pytest.raises(UnsupportedSchemaError) as caught:
        export_constraint(response_format)
    assert (caught.value.keyword, caught.value.param, caught.value.code) == (keyword, param, NOT_EXPORTABLE)
    assert keyword in caught.value.message and "runtime matcher" in caught.value.message


def test_unique_items_over_a_finite_set_travels(harness):
    schema = {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True}
    exported = export_constraint({"type": "json", "value": schema})
    verdicts = [same_masks(harness, {"type": "json", "value": schema}, exported.grammar, t)
                for t in ["[1,2,3]", "[3,1]", "[1,1]", "[]"]]
    assert verdicts == [True, True, False, True]


def test_any_key_order_is_refused_unless_there_is_no_object(harness):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    with pytest.raises(UnsupportedSchemaError) as caught:
        export_constraint({"type": "json", "value": schema}, property_order="any")
    assert caught.value.param == "property_order" and caught.value.code == NOT_EXPORTABLE
    plain = export_constraint({"type": "json", "value": {"type": "array", "items": {"type": "integer"}}},
                              property_order="any")
    assert plain.kind == "json"


@pytest.mark.parametrize(("response_format", "error", "param"), [
    ({"type": "json", "value": {"type": "string", "pattern": "(?=a)b"}}, UnsupportedSchemaError,
     "response_format.value.pattern"),
    ({"type": "json", "value": {"enum": []}}, UnsatisfiableSchemaError, "response_format.value"),
    ({"type": "json", "value": {"type": "objekt"}}, InvalidSchemaError, "response_format.value.type"),
    ({"type": "regex", "value": "(unclosed"}, InvalidRegexError, "response_format.value"),
    ({"type": "grammar", "value": "start: undefined_rule"}, InvalidGrammarError, "response_format"),
])
def test_what_constrain_refuses_is_refused_alike(harness, response_format, error, param):
    with pytest.raises(error) as ours:
        compile_constraint(response_format, harness.tokenizer)
    with pytest.raises(error) as exported:
        export_constraint(response_format)
    assert type(exported.value) is type(ours.value)
    assert exported.value.param == param


def test_hostile_schemas_are_refused_as_constrain_refuses_them(harness):
    from tests.hostile_schemas import HOSTILE

    for name, schema in HOSTILE.items():
        outcomes = []
        for attempt in (lambda rf: compile_constraint(rf, harness.tokenizer),
                        lambda rf: export_constraint(rf, compile_timeout_s=2.0)):
            try:
                attempt({"type": "json", "value": schema})
                outcomes.append(None)
            except ConstrainError as exc:
                outcomes.append(exc)
        ours, exported = outcomes
        if isinstance(ours, CompileTimeoutError) or isinstance(exported, CompileTimeoutError):
            continue  # a deadline, not a verdict: which side meets it depends on the machine's load
        if ours is None and exported is not None:
            assert exported.code == NOT_EXPORTABLE and exported.keyword == "uniqueItems", name
        else:
            assert type(exported) is type(ours), name


def test_a_slow_export_ends_at_its_deadline():
    slow = {"type": "object", "properties": {f"export{i}": {"type": "integer"} for i in range(4000)}}
    with pytest.raises(CompileTimeoutError) as caught:
        export_constraint({"type": "json", "value": slow}, compile_timeout_s=0.01)
    assert caught.value.param == "response_format"


def test_free_text_has_nothing_to_export():
    with pytest.raises(InvalidRequestError) as caught:
        export_constraint(None)
    assert caught.value.param == "response_format"


# --------------------------------------------------------------------------- tools


def _request(**fields):
    return parse_request({"messages": [{"role": "user", "content": "Weather in Paris?"}], **fields})


@pytest.mark.parametrize("fields", [
    {"tools": [WEATHER, TIME]},
    {"tools": [WEATHER, TIME], "tool_choice": "required"},
    {"tools": [WEATHER, TIME], "tool_choice": "required", "parallel_tool_calls": False},
    {"tools": [WEATHER, TIME], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
    {"tools": [WEATHER], "response_format": {"type": "json", "value": {"type": "object", "properties": {
        "answer": {"type": "string"}}, "required": ["answer"]}}},
    {"tools": [WEATHER], "response_format": {"type": "regex", "value": r"\d+ degrees"}},
])
def test_tool_grammar_is_constrains_own(harness, fields):
    planner = Planner(tokenizer=harness.tokenizer, vocab_size=harness.vocab_size)
    plan = plan_tools(planner, _request(**fields))
    exported = export_constraint(fields.get("response_format"), tools=fields["tools"],
                                 tool_choice=fields.get("tool_choice"),
                                 parallel_tool_calls=fields.get("parallel_tool_calls"))
    assert exported.kind == "tools"
    assert exported.grammar == plan.compiled.constraint.source
    call = '<tool_call>[{"name":"get_weather","arguments":{"city":"Paris"}}]</tool_call>'
    two = '<tool_call>[{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"get_time","arguments":{}}]</tool_call>'
    for text in [call, two, '<tool_call>[{"name":"get_weather","arguments":{"town":"Paris"}}]</tool_call>',
                 '<tool_call>[{"name":"nope","arguments":{}}]</tool_call>', "It is sunny.", '{"answer":"sunny"}',
                 "21 degrees"]:
        ours = plan.compiled.matcher()
        assert harness.walk(ours, harness.server_matcher(exported.grammar), text)[0] is not None, text


def test_tool_calls_parse_back(harness):
    exported = export_constraint(tools=[WEATHER, TIME], tool_choice="auto")
    assert "get_weather" in exported.system_prompt and "<tool_call>" in exported.system_prompt
    text = '<tool_call>[{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"get_time","arguments":{}}]</tool_call>'
    assert server_accepts(harness, exported.grammar, text)
    message, reason = exported.parse(text)
    assert reason == "tool_calls" and message.content is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {})]
    message, _ = exported.parse(text.replace('"Paris"', '"Paris","unit":"F"'))
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "F"}
    assert all(c.id.startswith("call_") for c in message.tool_calls)
    assert exported.parse("It is sunny in Paris.") == (exported.parse("It is sunny in Paris.")[0], "stop")
    assert exported.parse("It is sunny in Paris.")[0].content == "It is sunny in Paris."
    # Cut short by the server's max_tokens: what there is, no validation.
    message, reason = exported.parse('<tool_call>[{"name":"get_weather","arguments":{"ci', "length")
    assert reason == "length" and message.tool_calls[0].function.arguments == '{"ci'
    # Output the grammar would have refused means the server did not apply it.
    with pytest.raises(GenerationError):
        exported.parse('<tool_call>[{"name":"get_weather","arguments":{"city":7}}]</tool_call>')


def test_required_tools_refuse_text_and_unknown_names(harness):
    exported = export_constraint(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    assert not server_accepts(harness, exported.grammar, "It is sunny.")
    assert not server_accepts(harness, exported.grammar, '<tool_call>[{"name":"get_time","arguments":{}}]</tool_call>')
    two = '<tool_call>[{"name":"get_weather","arguments":{"city":"A"}},{"name":"get_weather","arguments":{"city":"B"}}]</tool_call>'
    assert not server_accepts(harness, exported.grammar, two)
    info = exported.to_dict()["tool_calls"]
    assert info["names"] == ["get_weather"] and info["max_one_call"] and not info["text_allowed"]


def test_text_branch_is_validated_when_parsed():
    exported = export_constraint({"type": "json", "value": {"type": "object", "required": ["a"]}}, tools=[WEATHER])
    assert exported.parse('{"a":1}')[0].content == '{"a":1}'
    with pytest.raises(GenerationError):
        exported.parse('{"b":1}')
    plain = export_constraint({"type": "regex", "value": r"\d+"})
    assert plain.parse("12") == (plain.parse("12")[0], "stop")
    with pytest.raises(GenerationError):
        plain.parse("12a")
    assert plain.parse("12a", "length")[1] == "length"


def test_tool_errors_name_the_field():
    bad = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "pattern": "(?!x)y"}}}}}
    with pytest.raises(UnsupportedSchemaError) as caught:
        export_constraint(tools=[WEATHER, bad])
    assert caught.value.param.startswith("tools.1.function.parameters.properties.s")
    with pytest.raises(ToolChoiceError) as choice:
        export_constraint(tools=[WEATHER], tool_choice="get_time")
    assert choice.value.param == "tool_choice"
    unique = {"type": "json", "value": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}
    with pytest.raises(UnsupportedSchemaError) as runtime:
        export_constraint(unique, tools=[WEATHER])  # the text branch of "auto"
    assert runtime.value.param == "response_format.value.uniqueItems" and runtime.value.code == NOT_EXPORTABLE
    # tool_choice "none": the answer follows response_format alone.
    assert export_constraint({"type": "regex", "value": "x"}, tools=[WEATHER], tool_choice="none").kind == "regex"


# --------------------------------------------------------------------------- CLI


def test_cli_prints_the_grammar(capsys, tmp_path):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    assert main(["compile", "--json-schema", json.dumps(schema)]) == 0
    assert capsys.readouterr().out == export_constraint({"type": "json", "value": schema}).grammar
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER, TIME]))
    assert main(["compile", "--tools", str(tools), "--tool-choice", "get_time", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "tools" and out["tool_calls"]["names"] == ["get_time"]
    assert out["grammar"] == export_constraint(tools=[WEATHER, TIME], tool_choice="get_time").grammar
    assert "get_time" in out["system_prompt"]


@pytest.mark.parametrize(("args", "where"), [
    (["--json-schema", '{"type":"array","items":{"type":"string"},"uniqueItems":true}'], "response_format.value.uniqueItems"),
    (["--regex", "(unclosed"], "response_format.value"),
    (["--tools", "{not json"], "--tools"),
    (["--tools", '[{"type":"function","function":{"name":"f"}}]', "--tool-choice", "g"], "tool_choice"),
    ([], "response_format"),
])
def test_cli_bad_input_is_one_clear_line(capsys, args, where):
    assert main(["compile", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"constrain: error [{where}]:") and err.count("\n") == 1, err


# --------------------------------------------------------------------------- MaskBench


# Keywords with no exact grammar form whose values constrain's matcher checks when they end.
VALUE_CHECKED = {"oneOf", "not", "if", "multipleOf", "unevaluatedProperties", "unevaluatedItems", "patternProperties"}


def test_maskbench_sample_agrees_with_compile_constraint(harness):
    """500 MaskBench schemas: every export compiles in llguidance alone and masks every test
    instance as constrain does, step by step; runtime-only schemas get the clear error."""
    path = SHARED / "data" / "maskbench.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set CONSTRAIN_SHARED)")
    records = agreement.sample(agreement.load_records(str(path)), 500, seed=0)
    figures = agreement.run(records, harness)
    assert figures.disagreements == []
    assert figures.schemas == 500 and figures.exported >= 450
    assert figures.refused_runtime and set(figures.refused_runtime) <= {"uniqueItems", "contains", *VALUE_CHECKED}
    assert figures.accepted > 400 and figures.rejected > 400
