"""The Compiler owns its engine and a bounded cache; the registry keeps no tokenizer alive."""

from __future__ import annotations

import gc
import weakref

import pytest

from constrain import compile_constraint
from constrain.constraints import COMPILERS, Compiler, CompilerRegistry
from constrain.errors import SchemaLimitError
from constrain.vocab import Vocabulary


def test_the_cache_is_bounded_raw_entries_included(tokenizer):
    compiler = Compiler("llguidance", Vocabulary(tokenizer), cache_size=3)
    formats = [{"type": "regex", "value": f"a{i}b"} for i in range(5)]
    for fmt in formats:
        compiler.compile(fmt)
        assert len(compiler) <= 3  # each compile adds a grammar entry and a raw-text entry
    last = compiler.compile(formats[-1])
    assert compiler.compile(formats[-1]) is last  # a repeat is a hit
    compiler.clear()
    assert len(compiler) == 0
    assert compiler.compile(formats[-1]) is not last


def test_a_model_compiles_through_the_registrys_compiler(model):
    assert model.compiler is COMPILERS.compiler(model.planner.engine, model.tokenizer)
    assert model.core.vocabulary is model.compiler.vocabulary is COMPILERS.vocabulary(model.tokenizer)
    fmt = {"type": "json", "value": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    assert compile_constraint(fmt, model.tokenizer) is model.compile(fmt)
    assert model.compile(fmt).vocabulary is model.compiler.vocabulary


def test_the_registry_forgets_a_collected_tokenizer(tokenizer):
    from constrain.loading import load_tokenizer

    registry = CompilerRegistry()
    other = load_tokenizer(None)
    compiler = weakref.ref(registry.compiler("llguidance", other))
    vocabulary = weakref.ref(registry.vocabulary(other))
    assert registry.compiler("llguidance", other) is compiler()
    del other
    gc.collect()
    assert compiler() is None and vocabulary() is None


def test_an_any_order_rewrite_past_the_engine_s_size_keeps_the_schema_s_order(tokenizer, monkeypatch):
    # The rewrite copies definitions for each place; when the engine refuses the result for its
    # size, the schema compiles in the schema's order (exact still), not into an error.
    compiler = Compiler("llguidance", Vocabulary(tokenizer))
    compile_for_engine = compiler.engine.compile

    def small_engine(grammar):
        if grammar.rules:  # the rewritten objects come with their rules
            raise SchemaLimitError("the JSON Schema compiles to a grammar past the engine's size", limit="grammar")
        return compile_for_engine(grammar)

    monkeypatch.setattr(compiler.engine, "compile", small_engine)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a"]}
    compiled = compiler.compile({"type": "json", "value": schema}, property_order="any")
    matcher = compiled.matcher()
    assert all(matcher.consume(t) for t in tokenizer.encode('{"a":1,"b":2}', add_special_tokens=False))
    assert matcher.is_accepting()
    matcher = compiled.matcher()
    assert not all(matcher.consume(t) for t in tokenizer.encode('{"b":2,"a":1}', add_special_tokens=False))

    def no_engine(grammar):
        raise SchemaLimitError("the JSON Schema compiles to a grammar past the engine's size", limit="grammar")

    monkeypatch.setattr(compiler.engine, "compile", no_engine)
    with pytest.raises(SchemaLimitError):  # too large in the schema's order as well: the error stands
        compiler.compile({"type": "json", "value": {**schema, "title": "other"}}, property_order="any")
