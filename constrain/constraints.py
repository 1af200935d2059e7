"""compile_constraint: a response_format and a tokenizer in, a reusable compiled constraint out.

Ties the pure compiler (``constrain.compiler``, ``constrain.schema``) to an engine, and
caches both levels: a :class:`Compiler` per engine and tokenizer (the vocabulary conversion
costs ~0.2-1 s) owns its engine and an LRU of compiled constraints (a hit is a dict lookup).
Whoever owns a tokenizer holds its Compiler; ``COMPILERS`` keeps them for bare tokenizers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import weakref
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
    UnsupportedSchemaError,
)
from constrain.lru import LRUCache
from constrain.schema import normalize_with_rules, validate_instance
from constrain.vocab import Vocabulary

# Compiled constraints a Compiler keeps (raw-text entries included), least recently used dropped first.
CACHE_SIZE = 512

def engine_grammar(constraint: Constraint, *, check_pattern_properties: bool = False) -> EngineGrammar:
    """The engine's input for a constraint: JSON schemas pass through the normaliser first."""
    if constraint.kind == "json":
        normalized = normalize_with_rules(
            constraint.schema, close_objects=constraint.close_objects, param=constraint.param or "schema",
            property_order=constraint.property_order, check_pattern_properties=check_pattern_properties,
        )
        return EngineGrammar("json_schema", normalized.schema, JsonOptions(whitespace=constraint.whitespace),
                             rules=normalized.rules)
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

    Do not construct directly: use :func:`compile_constraint` (or a :class:`Compiler`).
    ``vocabulary`` is its tokenizer's (the decoding loop's budget closer reads it).
    """

    def __init__(self, constraint: Constraint, engine: Engine, grammar: CompiledGrammar | None,
                 vocabulary: Vocabulary) -> None:
        self.constraint = constraint
        self.engine = engine
        self.grammar = grammar
        self.vocabulary = vocabulary

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


def _check_property_order(property_order: Any) -> None:
    if property_order not in ("schema", "any"):
        raise InvalidRequestError(f"`property_order` must be 'schema' or 'any', got {property_order!r}",
                                  param="property_order")


class Compiler:
    """One engine bound to one tokenizer, and the constraints it compiled (xgrammar's GrammarCompiler).

    Made once per (engine, tokenizer): converting the vocabulary for the engine costs ~0.2-1 s,
    and a repeated constraint must be a dictionary lookup, so the compiler owns its engine and
    an LRU cache of what it compiled. Held by whoever owns the tokenizer (a Model's Planner);
    :func:`compile_constraint` takes the one ``COMPILERS`` keeps for a bare tokenizer.
    Thread-safe.
    """

    def __init__(self, engine: str, vocabulary: Vocabulary, vocab_size: int | None = None, *,
                 cache_size: int = CACHE_SIZE) -> None:
        self.engine = create_engine(engine, vocabulary.tokenizer, vocab_size)
        self.vocabulary = vocabulary
        # Raw-text keys ("raw", ...) hold a CompiledConstraint, constraint keys its grammar.
        self._cache: LRUCache[tuple[Any, ...], CompiledConstraint | CompiledGrammar] = LRUCache(cache_size)

    def _get(self, key: tuple[Any, ...]) -> CompiledConstraint | CompiledGrammar | None:
        return self._cache.get(key)

    def _put(self, key: tuple[Any, ...], value: CompiledConstraint | CompiledGrammar) -> None:
        self._cache.put(key, value)

    def __len__(self) -> int:
        """How many entries the cache holds (raw-text entries included)."""
        return len(self._cache)

    def clear(self) -> None:
        """Forget every compiled constraint (benchmarks measure cold compiles)."""
        self._cache.clear()

    def compile(
        self,
        response_format: Any,
        *,
        whitespace: Whitespace = "compact",
        close_objects: bool = False,
        allow_empty: bool = False,
        property_order: PropertyOrder = "schema",
        compile_timeout_s: float | None = DEFAULT_COMPILE_TIMEOUT_S,
    ) -> CompiledConstraint:
        """Compile a ``response_format`` for this engine and tokenizer (cached); parameters and
        errors as :func:`compile_constraint`'s."""
        _check_property_order(property_order)
        # A repeated request skips parsing and the meta-schema check: keyed on its raw text.
        raw_key: tuple[Any, ...] | None = None
        if isinstance(response_format, dict):
            try:
                raw_key = ("raw", json.dumps(response_format, ensure_ascii=False), whitespace, close_objects,
                           allow_empty, property_order)
            except (TypeError, ValueError, RecursionError):  # not JSON, or too deep: the checks below say why
                raw_key = None
        if raw_key is not None:
            hit = self._get(raw_key)
            if isinstance(hit, CompiledConstraint):
                return hit
        try:
            with compile_deadline(compile_timeout_s):
                compiled = run_bounded(lambda: self._compile(response_format, whitespace=whitespace,
                                                             close_objects=close_objects, allow_empty=allow_empty,
                                                             property_order=property_order))
        except CompileTimeoutError as exc:
            exc.locate("response_format")
            raise
        if raw_key is not None and compiled.grammar is not None and not isinstance(compiled.grammar, EmptyGrammar):
            self._put(raw_key, compiled)
        return compiled

    def _compile(self, response_format: Any, *, whitespace: Whitespace, close_objects: bool, allow_empty: bool,
                 property_order: PropertyOrder) -> CompiledConstraint:
        """Parse, normalise and compile one constraint that missed the raw-text cache."""
        eng = self.engine
        try:
            if isinstance(response_format, Constraint):
                constraint = response_format
            else:
                constraint = parse_response_format(response_format, whitespace=whitespace,
                                                   close_objects=close_objects)
            if property_order != constraint.property_order and constraint.kind == "json":
                constraint = dataclasses.replace(constraint, property_order=property_order)
            if constraint.kind == "text":
                return CompiledConstraint(constraint, eng, None, self.vocabulary)
            cached = self._get(constraint.key)
            grammar = None if isinstance(cached, CompiledConstraint) else cached
            if grammar is None:
                try:
                    grammar = _compile_grammar(eng, constraint)
                except UnsatisfiableSchemaError:
                    if not allow_empty:
                        raise
                    # not cached: rare, and cheap to redo
                    return CompiledConstraint(constraint, eng, EmptyGrammar(), self.vocabulary)
                except ConstrainError as exc:
                    exc.locate("response_format")  # an engine's refusal: its pointer is in the engine's schema
                    raise
                self._put(constraint.key, grammar)
        except RecursionError:  # nesting the static limits allow, multiplied through `$ref`s
            raise SchemaLimitError("`response_format` nests too deeply (through its `$ref`s) to be compiled",
                                   limit="depth", param="response_format") from None
        return CompiledConstraint(constraint, eng, grammar, self.vocabulary)


def _compile_grammar(engine: Engine, constraint: Constraint) -> CompiledGrammar:
    """The engine's grammar for ``constraint``. An engine that refuses ``patternProperties`` whose
    patterns one name may match together gets them checked by the matcher instead. The any-order
    rewrite copies definitions for each place it reaches: where that takes the grammar past the
    engine's size, the schema's order stays (as it does wherever the rewrite does not reach)."""
    try:
        return _compile_patterns(engine, constraint)
    except SchemaLimitError:
        if constraint.kind != "json" or constraint.property_order != "any":
            raise
    return _compile_patterns(engine, dataclasses.replace(constraint, property_order="schema"))


def _compile_patterns(engine: Engine, constraint: Constraint) -> CompiledGrammar:
    try:
        return engine.compile(engine_grammar(constraint))
    except UnsupportedSchemaError as exc:
        if constraint.kind != "json" or exc.keyword != "patternProperties":
            raise
    return engine.compile(engine_grammar(constraint, check_pattern_properties=True))


class CompilerRegistry:
    """The Vocabulary of each tokenizer, and its Compiler per engine, for callers that hold only a tokenizer.

    :func:`compile_constraint` and :func:`get_engine` take a bare tokenizer, so something must
    keep its Compiler between calls (else each call would convert the vocabulary again). There
    is one, ``COMPILERS``; a Model's Planner takes its Compiler from it as well, so that
    ``compile_constraint(f, model.tokenizer)`` shares the model's engine and cache. Weakly keyed
    on the tokenizer (by identity, dropped when the tokenizer is collected; a Vocabulary holds
    its tokenizer weakly): the registry keeps no tokenizer alive, nor its engines or caches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vocabularies: dict[int, Vocabulary] = {}
        self._compilers: dict[tuple[str, int], Compiler] = {}

    def vocabulary(self, tokenizer: Any) -> Vocabulary:
        """The one Vocabulary of ``tokenizer``."""
        key = id(tokenizer)
        with self._lock:
            found = self._vocabularies.get(key)
            if found is None:
                found = self._vocabularies[key] = Vocabulary(tokenizer)
                weakref.finalize(tokenizer, self._forget, key)
        return found

    def compiler(self, engine: str, tokenizer: Any, vocab_size: int | None = None) -> Compiler:
        """The Compiler of ``engine`` for ``tokenizer``, made on first use (``vocab_size`` counts then)."""
        key = (engine, id(tokenizer))
        with self._lock:
            found = self._compilers.get(key)
        if found is None:
            made = Compiler(engine, self.vocabulary(tokenizer), vocab_size)  # slow: not under the lock
            with self._lock:
                found = self._compilers.setdefault(key, made)
        return found

    def _forget(self, key: int) -> None:
        with self._lock:
            self._vocabularies.pop(key, None)
            for gone in [k for k in self._compilers if k[1] == key]:
                del self._compilers[gone]


COMPILERS = CompilerRegistry()


def get_engine(name: str, tokenizer: Any, vocab_size: int | None = None) -> Engine:
    """The engine ``name`` bound to ``tokenizer``, created once and reused."""
    return COMPILERS.compiler(name, tokenizer, vocab_size).engine


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
    _check_property_order(property_order)
    return COMPILERS.compiler(engine, tokenizer, vocab_size).compile(
        response_format, whitespace=whitespace, close_objects=close_objects, allow_empty=allow_empty,
        property_order=property_order, compile_timeout_s=compile_timeout_s,
    )
