"""Schema-valid test data without a model: random walks through a compiled constraint's masks.

Each draw starts a fresh matcher of the schema's compiled constraint and picks, token after
token, one of the tokens the mask allows, until end of sequence is allowed and chosen. Whatever
the walk writes is therefore in the constraint's language, runtime rules included
(``uniqueItems``, ``contains``, any key order), and is checked once more with the project's
validator and with plain ``jsonschema`` before it is returned: an instance either fails is
dropped and drawn again, never returned.

Uniformly random tokens would write strings hundreds of tokens long (almost every token may
continue a string, few close it), so the walk leans toward closing: at each step, with a
probability that grows with the choices made so far, it takes a token that closes one level (a
``"`` ending the open string, ``]``, ``}``, end of sequence) where one is allowed. Otherwise it
picks a group, then a token in it: outside strings the tokens are grouped by first character
(a comma weighs as much as all the digits), inside by kind (one character, any); the schema's
literals (declared keys, enum values) and the literal runs of its patterns form groups of
their own, so that optional properties and listed values come up in open objects too. Where
nothing may close for long (a string that must end in ``.md``), the walk appends a short match
of one of the schema's patterns, or searches breadth first for the shortest run of characters
after which something may close. Forced tokens (key names) are free; a walk past ``max_tokens``
choices is dropped and drawn again with more pressure, so sizes stay bounded and draws end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from constrain.constraints import CompiledConstraint
    from constrain.engines.base import Matcher

PropertyOrder = Literal["schema", "any"]

class ExampleError(ValueError):
    """No valid instance could be drawn within the attempts or the time allowed."""


class Chooser(Protocol):
    """Picks each step's token among the allowed ones (random draws, or Hypothesis' choices)."""

    def choose(self, closers: np.ndarray, groups: list[np.ndarray], step: int, pressure: float,
               literal: bool) -> int:
        """One token id: out of ``closers`` (tokens that only close; may be empty) or one of
        ``groups`` (the other allowed tokens, the simplest group first; never empty). ``literal``:
        the first group goes on with one of the schema's literals (a declared key, an enum value)."""
        ...


@dataclass
class RandomChooser:
    """Seeded random choices that lean toward closing as the instance grows."""

    rng: np.random.Generator
    soft_tokens: int = 48

    def choose(self, closers: np.ndarray, groups: list[np.ndarray], step: int, pressure: float,
               literal: bool) -> int:
        # 0.15 at the start (optional properties, more items, longer strings stay likely), 1 at the soft size.
        p_close = min(1.0, 0.15 + pressure * step / self.soft_tokens)
        if closers.size and self.rng.random() < p_close:
            return int(closers[self.rng.integers(closers.size)])
        # Half the time the simplest group (a declared key or listed value, a comma on to the next
        # item, a one-character string token); not more under pressure, since where nothing may
        # close yet (too few matches of `contains`) what is needed may lie in another group.
        simplest = self.rng.random() < 0.5
        group = groups[0] if simplest else groups[int(self.rng.integers(len(groups)))]
        return int(group[self.rng.integers(group.size)])


# Outside strings, the order of the first-character groups: what moves on (a comma, a closing
# bracket, a key) before what grows a value in place (letters, digits). Half the random draws
# take group 0, and a shrinking Hypothesis example tends toward it.
_PRIORITY = {",": 0, "]": 1, "}": 2, '"': 3, ":": 4, "[": 5, "{": 6, "-": 9}
_MAX_HINTS = 512
# Free choices after which a walk in a string that may not close yet looks for a way to close it
# (outside strings: later), how long it waits after a search that found none, and how far a
# search goes (each state costs ~30 µs, so a search at most ~50 ms).
_FIRST_SEARCH = 16
_STUCK_AFTER = 48
_SEARCH_DEPTH = 48
_SEARCH_STATES = 1500


@dataclass
class _Vocabulary:
    """Per tokenizer: the tokens that only close (in a string, outside one), the one-character
    tokens, each token's first-character group, and the tokens by text."""

    close_in_string: np.ndarray
    close_outside: np.ndarray
    one_char: np.ndarray
    first_class: np.ndarray
    texts: list[str]
    by_text: dict[str, list[int]]
    search_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    close_ids_in_string: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    close_ids_outside: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        # Printable ASCII but the backslash (after which a quote would not close): what a search spells with.
        self.search_ids = np.array([i for i in np.flatnonzero(self.one_char).tolist()
                                    if " " <= self.texts[i] <= "~" and self.texts[i] != "\\"], dtype=np.int64)
        self.close_ids_in_string = np.flatnonzero(self.close_in_string)
        self.close_ids_outside = np.flatnonzero(self.close_outside)

    @classmethod
    def build(cls, texts: list[str], vocab_size: int, eos_token_id: int) -> _Vocabulary:
        texts = texts[:vocab_size] + [""] * max(0, vocab_size - len(texts))
        in_string = np.zeros(vocab_size, dtype=bool)
        outside = np.zeros(vocab_size, dtype=bool)
        one_char = np.zeros(vocab_size, dtype=bool)
        first_class = np.full(vocab_size, 2**30, dtype=np.int64)
        by_text: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if not text or i == eos_token_id:
                continue
            by_text.setdefault(text, []).append(i)
            head = text[0]
            first_class[i] = _PRIORITY.get(head, 7 if head.isalpha() else 10 if head.isdigit() else 11 + ord(head))
            # One level at a time: `"}` would end the object along with the string, every time.
            if text in ("]", "}"):
                outside[i] = True
            elif text == '"':
                in_string[i] = True
            if len(text) == 1 and text != "\ufffd":
                one_char[i] = True
        if 0 <= eos_token_id < vocab_size:
            in_string[eos_token_id] = outside[eos_token_id] = True
        return cls(in_string, outside, one_char, first_class, texts, by_text)

    def prefix_ids(self, text: str) -> list[int]:
        """The tokens whose text is a (non-empty) prefix of ``text``."""
        return [i for end in range(1, len(text) + 1) for i in self.by_text.get(text[:end], ())]

    def by_first_class(self, ids: np.ndarray) -> list[np.ndarray]:
        if ids.size == 0:
            return []
        classes = self.first_class[ids]
        order = np.argsort(classes, kind="stable")
        cuts = np.flatnonzero(np.diff(classes[order])) + 1
        return np.split(ids[order], cuts)


@dataclass
class _Hints:
    """A schema's literal texts (property names, enum and const values, as JSON) and the tokens
    that begin one: declared keys and listed values weigh as much as everything else in an open object."""

    literals: list[str]
    starts: np.ndarray
    # Per open string's text: the tokens that go on with a literal it may become (walks repeat them).
    continuations: dict[str, np.ndarray] = field(default_factory=lambda: {"": np.zeros(0, dtype=np.int64)})
    pieces: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # tokens from patterns' literal runs
    longest: int = 0
    matches: list[str] = field(default_factory=list)  # a short match of each pattern, to append when stuck
    _search_ids: np.ndarray | None = None

    def search_ids(self, vocab: _Vocabulary) -> np.ndarray:
        """What a search for a way to close spells with: printable characters and pattern pieces."""
        if self._search_ids is None:
            # Pieces first: a search keeps the first path to each distinct mask, and "." must win over "!" in ".md".
            pieces = np.flatnonzero(self.pieces)
            self._search_ids = np.concatenate([pieces, np.setdiff1d(vocab.search_ids, pieces)])
        return self._search_ids

    def continuing(self, vocab: _Vocabulary, current: str) -> np.ndarray:
        ids = self.continuations.get(current)
        if ids is None and len(current) > self.longest:
            return self.continuations[""]
        if ids is None:
            live = [h for h in self.literals if len(h) > len(current) and h.startswith(current)]
            ids = np.unique(np.array([i for h in live for i in vocab.prefix_ids(h[len(current):])], dtype=np.int64))
            if len(self.continuations) < 4096:
                self.continuations[current] = ids
        return ids

    @classmethod
    def build(cls, schema: Any, vocab: _Vocabulary) -> _Hints:
        found: dict[str, None] = {}
        patterns: dict[str, None] = {}
        _collect_literals(schema, found, patterns)
        literals = list(found)[:_MAX_HINTS]
        starts = np.zeros(len(vocab.texts), dtype=bool)
        for literal in literals:
            starts[vocab.prefix_ids(literal)] = True
        pieces = np.zeros(len(vocab.texts), dtype=bool)
        matches: dict[str, None] = {}
        for pattern in list(patterns)[:_MAX_HINTS]:
            for piece in _pattern_pieces(pattern):
                for begin in range(len(piece)):
                    pieces[vocab.prefix_ids(piece[begin:])] = True
            match = minimal_match(pattern)
            if match and len(match) <= 256:
                matches[match] = None
        return cls(literals, starts, pieces=pieces, longest=max(map(len, literals), default=0), matches=list(matches))


def _pattern_pieces(pattern: str) -> list[str]:
    """The literal runs of a regex (``^.*\\.md$`` -> ``.md``): strings it needs may hold them."""
    pieces, run, i = [], "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            following = pattern[i + 1]
            if following.isalnum():  # a class (\\d, \\w, ...) or an escape: the run ends
                pieces.append(run)
                run = ""
            else:
                run += following
            i += 2
            continue
        if char in "[{":  # a class or a count: skip it whole
            closing = pattern.find("]" if char == "[" else "}", i + 2 if char == "[" else i + 1)
            pieces.append(run)
            run, i = "", (len(pattern) if closing < 0 else closing + 1)
            continue
        if char in "^$.*+?()|":
            pieces.append(run)
            run = ""
        else:
            run += char
        i += 1
    pieces.append(run)
    return [p for p in pieces if p and (len(p) > 1 or not p.isalnum())][:16]


def minimal_match(pattern: str) -> str | None:
    """A short string holding a match of ``pattern`` (Python's reading of it), or None when the
    pattern has parts this does not spell (lookaround, backreferences, negated classes of categories)."""
    import importlib

    sre = importlib.import_module("re._constants")  # Python's own regex parser (no stubs: typed Any here)
    parser = importlib.import_module("re._parser")

    def spell(items: Any) -> str:
        out = ""
        for op, arg in items:
            if op is sre.LITERAL:
                out += chr(arg)
            elif op is sre.ANY:
                out += "a"
            elif op is sre.NOT_LITERAL:
                out += "a" if arg != ord("a") else "b"
            elif op is sre.IN:
                out += _class_member(arg)
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
                low, _, body = arg
                out += spell(body) * low
            elif op is sre.SUBPATTERN:
                out += spell(arg[-1])
            elif op is sre.BRANCH:
                out += spell(arg[1][0])
            elif op is sre.AT:
                continue
            else:
                raise ValueError(op)
        return out

    def _class_member(members: Any) -> str:
        for op, arg in members:
            if op is sre.NEGATE:
                return "\u00a7" if all(o is not sre.CATEGORY for o, _ in members) and not _in_class(members, "\u00a7") else ""
            if op is sre.LITERAL:
                return chr(arg)
            if op is sre.RANGE:
                return chr(arg[0])
            if op is sre.CATEGORY:
                return {sre.CATEGORY_DIGIT: "0", sre.CATEGORY_WORD: "a", sre.CATEGORY_SPACE: " "}.get(arg, "")
        return ""

    def _in_class(members: Any, char: str) -> bool:
        code = ord(char)
        return any((op is sre.LITERAL and arg == code) or (op is sre.RANGE and arg[0] <= code <= arg[1])
                   for op, arg in members)

    try:
        return spell(parser.parse(pattern))
    except Exception:  # noqa: BLE001 - a pattern Python cannot read, or parts we do not spell
        return None


def _collect_literals(node: Any, found: dict[str, None], patterns: dict[str, None]) -> None:
    if len(found) >= _MAX_HINTS:
        return
    if isinstance(node, list):
        for item in node:
            _collect_literals(item, found, patterns)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas") and isinstance(value, dict):
            if key == "properties":
                found.update((json.dumps(name, ensure_ascii=False), None) for name in value)
            if key == "patternProperties":
                patterns.update((name, None) for name in value)
            for sub in value.values():
                _collect_literals(sub, found, patterns)
        elif key in ("required",) and isinstance(value, list):
            found.update((json.dumps(name, ensure_ascii=False), None) for name in value if isinstance(name, str))
        elif key == "enum" and isinstance(value, list):
            found.update((json.dumps(v, ensure_ascii=False, separators=(",", ":")), None) for v in value)
        elif key == "const":
            found[json.dumps(value, ensure_ascii=False, separators=(",", ":"))] = None
        elif key == "pattern" and isinstance(value, str):
            patterns[value] = None
        elif key == "format" and value in ("email", "idn-email"):
            patterns["@"] = None
        elif key not in ("examples", "default", "description", "title", "$comment"):
            _collect_literals(value, found, patterns)


@dataclass
class _State:
    """Where the walk stands in its JSON: inside a string or not, and the open string's text."""

    in_string: bool = False
    escaped: bool = False
    current: str = ""  # the open string so far, its quote included
    at_start: bool = True  # outside strings: a value or key may begin here
    following: bool = False  # the open string was begun as one of the schema's literals

    def advance(self, text: str) -> None:
        for char in text:
            if not self.in_string:
                if char == '"':
                    self.in_string, self.current = True, '"'
                elif not char.isspace():
                    self.at_start = char in "[{,:"
                continue
            self.current += char
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string, self.current, self.at_start = False, "", False
                self.following = False

    def groups(self, vocab: _Vocabulary, hints: _Hints, allowed: np.ndarray,
               every: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """The allowed tokens in groups to pick from uniformly, the simplest group first: outside a
        string, literal starts then by first character (so ``,`` weighs as much as all the digits);
        in one, continuations of a literal, then one-character tokens, then all."""
        if not self.in_string:
            hinted = allowed & hints.starts if self.at_start else np.zeros_like(allowed)
            starting = [np.flatnonzero(hinted)] if hinted.any() else []
            return starting + vocab.by_first_class(np.flatnonzero(allowed & ~hinted)), bool(starting)
        out: list[np.ndarray] = []
        ids = hints.continuing(vocab, self.current)
        if ids.size:
            continuing = ids[allowed[ids]]
            if continuing.size:
                if self.following:  # a literal once begun is finished: declared keys come whole
                    return [continuing], True
                out.append(continuing)
        literal = bool(out)
        if hints.pieces.size:
            pieces = np.flatnonzero(allowed & hints.pieces)
            if pieces.size:
                out.append(pieces)
        short = np.flatnonzero(allowed & vocab.one_char)
        if short.size:
            out.append(short)
        out.append(every)
        return out, literal


def _allowed(words: np.ndarray, ids: np.ndarray) -> np.ndarray:
    bits = words.view(np.uint32)
    return ((bits[ids >> 5] >> (ids & 31).astype(np.uint32)) & 1).astype(bool)  # type: ignore[no-any-return]


def _shortest_run(matcher: Matcher, candidates: np.ndarray, targets: np.ndarray, words: np.ndarray,
                  max_depth: int = _SEARCH_DEPTH, max_states: int = _SEARCH_STATES) -> list[int] | None:
    """Breadth first over one-character tokens, one state per distinct mask a level: the shortest
    path after which a ``targets`` token is allowed, or None. The matcher is left as it was."""
    frontier: list[list[int]] = [[]]
    states = 0
    for _ in range(max_depth):
        following: list[list[int]] = []
        seen: set[bytes] = set()
        for path in frontier:
            for token in path:
                matcher.consume(token)
            try:
                matcher.fill_bitmask(words)
                for token in candidates[_allowed(words, candidates)].tolist():
                    if not matcher.consume(token):
                        continue
                    try:
                        matcher.fill_bitmask(words)
                        if _allowed(words, targets).any():
                            return [*path, token]
                        key = words.tobytes()
                        if key not in seen:
                            seen.add(key)
                            following.append([*path, token])
                    finally:
                        matcher.rollback(1)
                    states += 1
                    if states >= max_states:
                        return None
            finally:
                if path:
                    matcher.rollback(len(path))
        if not following:
            return None
        frontier = following
    return None


@dataclass
class _Schema:
    """What a draw needs of one schema, made once per schema."""

    compiled: CompiledConstraint
    validator: Validator
    hints: _Hints


class ExampleSampler:
    """Draws schema-valid instances by walking compiled constraints; owns its tokenizer and caches.

    Loading the tokenizer costs a few seconds once (no weights are read); compiled constraints
    and validators are kept per schema (the last ``cache_size``), so repeated draws from the
    same schema cost only the walk (a fraction of a millisecond per token).

    Parameters
    ----------
    tokenizer : transformers tokenizer, optional
        The vocabulary to walk; default: the embedded model's (``model`` picks another).
    model : str | os.PathLike, optional
        A local model folder or ``.gguf`` whose tokenizer to load when ``tokenizer`` is None.
    property_order : "schema" | "any", default: "schema"
        "any" draws objects' keys in every order the schema allows (costlier masks).
    max_tokens : int, default: 384
        Free choices per draw (forced tokens, such as key names, are not counted); a walk past
        this is dropped and drawn again with more pressure to close.
    """

    def __init__(self, tokenizer: Any = None, *, model: str | os.PathLike[str] | None = None,
                 property_order: PropertyOrder = "schema", max_tokens: int = 384, cache_size: int = 128) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self.property_order: PropertyOrder = property_order
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._vocabulary: _Vocabulary | None = None
        self._schemas: dict[str, _Schema] = {}
        self.dropped = 0  # walks whose output a validator rejected (would be a bug in the engine)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from constrain.loading import load_tokenizer

            self._tokenizer = load_tokenizer(self._model)
        return self._tokenizer

    def prepare(self, schema: Any, *, timeout_s: float | None = None) -> _Schema:
        """Compile ``schema`` and build its validator and hints (cached per schema)."""
        from jsonschema.validators import Draft202012Validator, validator_for

        from constrain import compile_constraint

        key = json.dumps(schema, sort_keys=True, ensure_ascii=False)
        hit = self._schemas.get(key)
        if hit is not None:
            return hit
        compiled = compile_constraint({"type": "json", "value": schema}, self.tokenizer,
                                      property_order=self.property_order,
                                      compile_timeout_s=2.0 if timeout_s is None else max(0.01, timeout_s))
        validator = validator_for(schema, default=Draft202012Validator)(schema)
        vocab = self._vocabulary_for(compiled)
        prepared = _Schema(compiled, validator, _Hints.build(schema, vocab))
        if len(self._schemas) >= self.cache_size:
            self._schemas.pop(next(iter(self._schemas)))
        self._schemas[key] = prepared
        return prepared

    def _vocabulary_for(self, compiled: CompiledConstraint) -> _Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = _Vocabulary.build(compiled.vocabulary.texts, compiled.vocab_size,
                                                 compiled.engine.eos_token_id)
        return self._vocabulary

    def walk(self, prepared: _Schema, chooser: Chooser, *, pressure: float = 1.0,
             deadline: float | None = None) -> tuple[bool, Any]:
        """One draw: (True, instance), or (False, None) when the walk ran past ``max_tokens``,
        reached a dead end, ran out of time, or wrote something a validator rejects."""
        from constrain.errors import GenerationError

        compiled = prepared.compiled
        vocab = self._vocabulary_for(compiled)
        eos = compiled.engine.eos_token_id
        matcher = compiled.matcher()
        assert matcher is not None, "a JSON constraint always has a matcher"
        words = np.zeros((compiled.vocab_size + 31) // 32, dtype=np.int32)
        tokens: list[int] = []
        state = _State()
        choices = 0  # only free choices count toward max_tokens: forced runs (long key names) are free
        next_search = _FIRST_SEARCH / pressure
        while choices <= self.max_tokens and len(tokens) <= 16 * self.max_tokens:
            if deadline is not None and time.monotonic() > deadline:
                return False, None
            forced = matcher.forced_tokens()
            if forced:
                for token in forced:
                    if not matcher.consume(token):
                        return False, None
                    tokens.append(token)
                    state.advance(vocab.texts[token])
                continue
            matcher.fill_bitmask(words)
            allowed = np.unpackbits(words.view(np.uint8), bitorder="little")[: compiled.vocab_size].view(bool)
            every = np.flatnonzero(allowed)
            if every.size == 0 or matcher.error() is not None:
                return False, None
            if every.size == 1:
                token = int(every[0])
            else:
                closers = np.flatnonzero(allowed & (vocab.close_in_string if state.in_string else vocab.close_outside))
                if closers.size == 0 and choices >= (next_search if state.in_string else 2 * next_search + _STUCK_AFTER):
                    # Long and nothing may close yet (a string that must end in ".md", a `contains`
                    # still short of matches): follow the shortest way to a complete output, if one is near.
                    # A failed search waits a while before the next; after a found one, the next stuck place may search at once.
                    found = self._unstick(matcher, vocab, prepared.hints, words, tokens, state)
                    next_search = choices if found else choices + _STUCK_AFTER
                    continue
                groups, literal = state.groups(vocab, prepared.hints, allowed, every)
                if state.following and literal:
                    closers = closers[:0]
                token = chooser.choose(closers, groups, choices, pressure, literal)
                if literal and state.in_string and not state.following:
                    state.following = bool(np.isin(token, groups[0]))
                choices += 1
            if token == eos:
                break
            if not matcher.consume(token):
                return False, None
            tokens.append(token)
            state.advance(vocab.texts[token])
        else:
            return False, None
        text = self.tokenizer.decode(tokens, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        try:
            compiled.check_output(text)
            value = json.loads(text)
        except (GenerationError, ValueError):
            self.dropped += 1
            return False, None
        if not prepared.validator.is_valid(value):
            self.dropped += 1
            return False, None
        return True, value

    def _unstick(self, matcher: Matcher, vocab: _Vocabulary, hints: _Hints, words: np.ndarray, tokens: list[int],
                 state: _State) -> bool:
        """Consume the shortest run of one-character tokens (or pieces of the schema's patterns)
        after which something may close (the open string, else a container or the output), when one is near."""
        targets = vocab.close_ids_in_string if state.in_string else vocab.close_ids_outside
        path = self._append_match(matcher, hints, targets, words) if state.in_string else None
        if path is None:
            path = _shortest_run(matcher, hints.search_ids(vocab), targets, words)
        for token in path or ():
            if not matcher.consume(token):
                return False
            tokens.append(token)
            state.advance(vocab.texts[token])
        return bool(path)

    def _append_match(self, matcher: Matcher, hints: _Hints, targets: np.ndarray, words: np.ndarray) -> list[int] | None:
        """The tokens of a short match of one of the schema's patterns, if the open string may take them
        and may close after them (an unanchored ``\\d{4}-\\d{2}`` gives a mask no search can follow)."""
        for match in hints.matches:
            tokens = self.tokenizer.encode(match, add_special_tokens=False)
            taken = 0
            for token in tokens:
                matcher.fill_bitmask(words)
                if not _allowed(words, np.array([token], dtype=np.int64))[0] or not matcher.consume(token):
                    break
                taken += 1
            closes = False
            if taken == len(tokens):
                matcher.fill_bitmask(words)
                closes = bool(_allowed(words, targets).any())
            if taken:
                matcher.rollback(taken)
            if closes:
                return list(tokens)
        return None

    def examples(self, schema: Any, n: int = 10, *, seed: int | None = 0, attempts: int = 20,
                 timeout_s: float | None = None) -> list[Any]:
        """``n`` instances of ``schema``, the same ones for the same seed. See :func:`examples`."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"`n` must be a whole number >= 0, got {n!r}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        prepared = self.prepare(schema, timeout_s=timeout_s)
        chooser = RandomChooser(np.random.default_rng(seed))
        out: list[Any] = []
        for index in range(n):
            pressure = 1.0
            for _ in range(attempts):
                ok, value = self.walk(prepared, chooser, pressure=pressure, deadline=deadline)
                if ok:
                    out.append(value)
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"drew {len(out)} of {n} examples in {timeout_s:g} s")
                pressure *= 1.5
            else:
                raise ExampleError(f"no valid instance for example {index} after {attempts} attempts "
                                   f"of at most {self.max_tokens} tokens")
        return out


@dataclass
class _Default:
    """The sampler the module-level functions share, made on first use (the tokenizer loads once)."""

    sampler: ExampleSampler | None = None

    def get(self) -> ExampleSampler:
        if self.sampler is None:
            self.sampler = ExampleSampler()
        return self.sampler


DEFAULT = _Default()


def default_sampler() -> ExampleSampler:
    """The shared :class:`ExampleSampler` over the embedded model's tokenizer (created lazily)."""
    return DEFAULT.get()


def examples(schema: Any, n: int = 10, *, seed: int | None = 0, sampler: ExampleSampler | None = None,
             timeout_s: float | None = None) -> list[Any]:
    """``n`` random instances valid against ``schema``, drawn without a model.

    The walk goes through the schema's compiled constraint, so every schema that
    :func:`constrain.compile_constraint` accepts works, with its runtime rules; each instance is
    also checked with ``jsonschema`` before it is returned. Optional properties, enum values and
    ``anyOf`` branches all come up; sizes stay small (a few dozen tokens).

    Parameters
    ----------
    schema : dict | bool
        A JSON Schema.
    n : int, default: 10
    seed : int | None, default: 0
        The same seed gives the same instances (for one tokenizer and engine version); None: fresh ones.
    sampler : ExampleSampler, optional
        Default: a shared sampler over the embedded model's tokenizer, loaded on first use (~5 s).
    timeout_s : float, optional
        Give up (``TimeoutError``) when compiling and drawing take longer than this.

    Raises
    ------
    constrain.errors.InvalidRequestError
        The schema is invalid or unsupported (as for ``compile_constraint``).
    ExampleError
        A draw found no valid instance within its attempts (a very large minimum size).
    """
    return (sampler or default_sampler()).examples(schema, n, seed=seed, timeout_s=timeout_s)

