"""compile_constraint: a response_format and a tokenizer in, a reusable compiled constraint out.

Ties the pure compiler (``constrain.compiler``, ``constrain.schema``) to an engine, and
caches both levels: one engine per tokenizer (the vocabulary conversion costs ~0.2-1 s),
one compiled grammar per canonical constraint (a hit is a dict lookup).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

from constrain.compiler import Constraint, PropertyOrder, Whitespace, parse_response_format
from constrain.compiler.regex import to_engine_regex
from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S, compile_deadline, run_bounded
from constrain.engines import (
    CompiledGrammar,
    EmptyGrammar,
    Engine,
    EngineGrammar,
    JsonOptions,
    Matcher,
    create_engine,
)
from constrain.errors import (
    CompileTimeoutError,
    ConstrainError,
    GenerationError,
    InvalidRequestError,
    SchemaLimitError,
    UnsatisfiableSchemaError,
)
from constrain.schema import normalize_with_rules, validate_instance

_CACHE_SIZE = 512
_lock = threading.Lock()
_engines: dict[tuple[str, int], Engine] = {}
# Per engine: raw-text keys ("raw", ...) hold a CompiledConstraint, constraint keys its grammar.
_compiled: dict[tuple[str, int], OrderedDict[tuple[Any, ...], CompiledConstraint | CompiledGrammar]] = {}


def get_engine(name: str, tokenizer: Any, vocab_size: int | None = None) -> Engine:
    """The engine ``name`` bound to ``tokenizer``, created once and reused."""
    key = (name, id(tokenizer))
    with _lock:
        engine = _engines.get(key)
    if engine is None:
        engine = create_engine(name, tokenizer, vocab_size)
        with _lock:
            _engines[key] = engine
            _compiled[key] = OrderedDict()
        weakref.finalize(tokenizer, _forget, key)
    return engine


def _forget(key: tuple[str, int]) -> None:
    with _lock:
        _engines.pop(key, None)
        _compiled.pop(key, None)


def engine_grammar(constraint: Constraint) -> EngineGrammar:
    """The engine's input for a constraint: JSON schemas pass through the normaliser first."""
    if constraint.kind == "json":
        schema, rules = normalize_with_rules(
            constraint.schema, close_objects=constraint.close_objects, param=constraint.param or "schema",
            property_order=constraint.property_order,
        )
        return EngineGrammar("json_schema", schema, JsonOptions(whitespace=constraint.whitespace),
                             rules=rules)
    if constraint.kind == "regex":
        return EngineGrammar("regex", to_engine_regex(constraint.source))
    if constraint.kind == "grammar":
        return EngineGrammar("lark", constraint.source)
    raise ValueError(f"a {constraint.kind} constraint has no grammar")


def check_text(constraint: Constraint, text: str, what: str) -> None:
    """Raise GenerationError naming ``what`` when a finished text fails a JSON or regex constraint."""
    if constraint.kind == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenerationError(f"{what} is not JSON ({exc}): {text[:200]!r}") from None
        problem = validate_instance(constraint.source, value)
        if problem:
            raise GenerationError(f"{what} fails its schema {problem}: {text[:200]!r}")
    elif constraint.kind == "regex" and re.fullmatch(constraint.source, text) is None:
        raise GenerationError(f"{what} does not match the regex: {text[:200]!r}")


class CompiledConstraint:
    """A constraint compiled for one tokenizer. Immutable; make one matcher per sequence.

    Do not construct directly: use :func:`compile_constraint`.
    """

    def __init__(self, constraint: Constraint, engine: Engine, grammar: CompiledGrammar | None) -> None:
        self.constraint = constraint
        self.engine = engine
        self.grammar = grammar

    @property
    def is_unconstrained(self) -> bool:
        return self.grammar is None

    @property
    def vocab_size(self) -> int:
        return self.engine.vocab_size

    def matcher(self) -> Matcher | None:
        """A fresh matcher for one sequence; None when the output is free text."""
        return None if self.grammar is None else self.grammar.matcher()

    def check_output(self, text: str) -> None:
        """Raise GenerationError if a finished output does not match: that would be a bug."""
        check_text(self.constraint, text, "constrained output")

    def __str__(self) -> str:
        return self.grammar.grammar_text if self.grammar is not None else "(unconstrained text)"

    def __repr__(self) -> str:
        return f"CompiledConstraint({self.constraint.kind}, engine={self.engine.name})"


def compile_constraint(
    response_format: Any,
    tokenizer: Any,
    *,
    engine: str = "llguidance",
    whitespace: Whitespace = "compact",
    close_objects: bool = False,
    vocab_size: int | None = None,
    allow_empty: bool = False,
    property_order: PropertyOrder = "schema",
    compile_timeout_s: float | None = DEFAULT_COMPILE_TIMEOUT_S,
) -> CompiledConstraint:
    """Compile a ``response_format`` (any accepted dialect, a pydantic class, or a Constraint).

    Parameters
    ----------
    response_format : dict | type[pydantic.BaseModel] | Constraint | None
        What the output must match; None means free text.
    tokenizer : transformers tokenizer
        The vocabulary the masks are over.
    engine : str, default: "llguidance"
    whitespace : "compact" | "pretty", default: "compact"
        JSON layout; compact leaves the model no whitespace to loop on.
    close_objects : bool, default: False
        Treat every object schema as ``additionalProperties: false``.
    allow_empty : bool, default: False
        A schema that admits no value compiles to a matcher that allows no token (for
        validators and test suites) instead of raising UnsatisfiableSchemaError; generation
        always refuses it, since no output could ever be complete.
    property_order : "schema" | "any", default: "schema"
        "schema": an object's declared properties come in the order the schema lists them (as
        every engine writes them; a ``reasoning`` key before ``answer`` is generated first).
        "any": every key order is accepted, still exactly (no repeated key, no missing required
        one), wherever one subschema governs the object; elsewhere the schema's order stays.
    compile_timeout_s : float | None, default: 2.0
        A compile that misses the cache ends by then (CompileTimeoutError, a 400) instead of
        running on; None: no deadline of its own (a caller's deadline, if any, still holds).

    Raises
    ------
    constrain.errors.InvalidRequestError
        (or a subclass) for an invalid or unsupported constraint, naming the field.
    """
    if property_order not in ("schema", "any"):
        raise InvalidRequestError(f"`property_order` must be 'schema' or 'any', got {property_order!r}",
                                  param="property_order")
    eng = get_engine(engine, tokenizer, vocab_size)
    cache = _compiled[(engine, id(tokenizer))]
    # A repeated request skips parsing and the meta-schema check: keyed on its raw text.
    raw_key: tuple[Any, ...] | None = None
    if isinstance(response_format, dict):
        try:
            raw_key = ("raw", json.dumps(response_format, ensure_ascii=False), whitespace, close_objects, allow_empty,
                       property_order)
        except (TypeError, ValueError, RecursionError):  # not JSON, or too deep: the checks below say why
            raw_key = None
    if raw_key is not None:
        with _lock:
            hit = cache.get(raw_key)
        if isinstance(hit, CompiledConstraint):
            return hit
    try:
        with compile_deadline(compile_timeout_s):
            compiled = run_bounded(lambda: _compile(response_format, eng, cache, whitespace=whitespace,
                                                    close_objects=close_objects, allow_empty=allow_empty,
                                                    property_order=property_order))
    except CompileTimeoutError as exc:
        exc.param = exc.param or "response_format"
        raise
    if raw_key is not None and compiled.grammar is not None and not isinstance(compiled.grammar, EmptyGrammar):
        with _lock:
            cache[raw_key] = compiled
    return compiled


def _compile(response_format: Any, eng: Engine,
             cache: OrderedDict[tuple[Any, ...], CompiledConstraint | CompiledGrammar], *,
             whitespace: Whitespace, close_objects: bool, allow_empty: bool,
             property_order: PropertyOrder) -> CompiledConstraint:
    """Parse, normalise and compile one constraint that missed the raw-text cache."""
    try:
        if isinstance(response_format, Constraint):
            constraint = response_format
        else:
            constraint = parse_response_format(response_format, whitespace=whitespace, close_objects=close_objects)
        if property_order != constraint.property_order and constraint.kind == "json":
            constraint = dataclasses.replace(constraint, property_order=property_order)
        if constraint.kind == "text":
            return CompiledConstraint(constraint, eng, None)
        with _lock:
            cached = cache.get(constraint.key)
            if cached is not None:
                cache.move_to_end(constraint.key)
        grammar = None if isinstance(cached, CompiledConstraint) else cached
        if grammar is None:
            try:
                grammar = eng.compile(engine_grammar(constraint))
            except UnsatisfiableSchemaError:
                if not allow_empty:
                    raise
                return CompiledConstraint(constraint, eng, EmptyGrammar())  # not cached: rare, and cheap to redo
            except ConstrainError as exc:
                if exc.param is None:
                    exc.param = "response_format"
                raise
            with _lock:
                cache[constraint.key] = grammar
                if len(cache) > _CACHE_SIZE:
                    cache.popitem(last=False)
    except RecursionError:  # nesting the static limits allow, multiplied through `$ref`s
        raise SchemaLimitError("`response_format` nests too deeply (through its `$ref`s) to be compiled",
                               limit="depth", param="response_format") from None
    return CompiledConstraint(constraint, eng, grammar)
