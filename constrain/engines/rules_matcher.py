"""A matcher that keeps rules no grammar can express, on top of any engine's matcher.

``uniqueItems`` and ``contains`` over unbounded items have no grammar (``constrain.schema.array_rules``
says where such arrays stand, as instance paths, and what each must keep), nor do objects whose
keys may come in any order (``constrain.schema.order``). This wrapper follows the JSON being
written (a small scanner over the token bytes), and at each mask removes every token that
would complete an item equal (in JSON Schema's sense: ``1 == 1.0``, key order ignored) to an
earlier item of a unique array, complete one match of ``contains`` too many, close the array
with too few, repeat a key of an any-order object, or close that object while it is not valid
against its subschema. Tokens are only ever removed, so the language can only shrink to the
exact one.

Only tokens holding a byte that can end a value (a quote, comma, bracket, brace, whitespace)
can complete an item or key or close a container, and only while a watched container is open
is anything checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

import numpy as np

from constrain.engines.base import Matcher
from constrain.nesting import string_char
from constrain.schema.array_rules import ArrayRule, Path, ValueRule, matches
from constrain.schema.check import is_valid_instance
from constrain.schema.order import ObjectRule

_ENDERS = frozenset(b'"]},} \n\r\t')
_DELIMS = frozenset(b"]},} \n\r\t")  # what ends a number or literal


def canonical(value: Any) -> Any:
    """A hashable form under which JSON Schema's equal values (and only those) coincide."""
    if isinstance(value, bool) or value is None:
        return ("v", value)
    if isinstance(value, (int, float, Decimal)):
        return ("n", Decimal(str(value)).normalize())
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(canonical(v) for v in value))
    return ("o", frozenset((k, canonical(v)) for k, v in value.items()))


@dataclass
class _Frame:
    kind: str  # "o" or "a"
    path: Path
    rule: ArrayRule | None = None  # arrays the matcher watches
    count: int = 0  # items matching the rule's `contains` so far
    index: int = 0  # arrays: the current item's index
    key: str | None = None  # objects: the key whose value comes next
    expect_key: bool = True  # objects: a key (or "}") comes next
    item_start: int | None = None  # watched arrays: where the current item's text began
    seen: set[Any] = field(default_factory=set)
    object_rule: ObjectRule | None = None  # any-order objects
    start: int = 0  # where the container's text began
    keys: frozenset[str] = frozenset()  # any-order objects: the keys so far


@dataclass(frozen=True)
class _Watched:
    """A value being written at a place with a ValueRule: where its text began, how it ends."""

    start: int
    depth: int  # containers open around it
    kind: str  # "c" container, "s" string, "n" number or literal
    rule: ValueRule


@lru_cache(maxsize=4096)
def _valid_text(schema: str, text: bytes) -> bool:
    """Whether a closed object's text is valid against ``schema`` (the many tokens that could
    close the same object all ask this with the same text)."""
    try:
        return is_valid_instance(schema, json.loads(text))
    except ValueError:
        return False


class _Scanner:
    """Where the output stands in its JSON: open containers, strings, scalars; watched items."""

    def __init__(self, rules: tuple[tuple[Path, ArrayRule | ObjectRule | ValueRule], ...]) -> None:
        self.array_rules = [(p, r) for p, r in rules if isinstance(r, ArrayRule)]
        self.object_rules = [(p, r) for p, r in rules if isinstance(r, ObjectRule)]
        self.value_rules = [(p, r) for p, r in rules if isinstance(r, ValueRule)]
        self.watched: list[_Watched] = []  # values under a ValueRule being written, outermost first
        self.buf = bytearray()
        self.stack: list[_Frame] = []
        self.in_string = False
        self.escaped = False
        self.string_is_key = False
        self.key_start = 0
        self.in_scalar = False

    def trial(self, tokens: list[bytes]) -> int:
        """How many of ``tokens`` can follow, in order, before one completes a repeated item.

        Runs on a copy that shares this scanner's buffer and ``seen`` sets, reads them only,
        and cuts the buffer back afterwards: nothing here changes.
        """
        other = _Scanner.__new__(_Scanner)
        other.__dict__ = {**self.__dict__, "stack": [_Frame(**f.__dict__) for f in self.stack],
                          "watched": list(self.watched)}
        length = len(self.buf)
        try:
            for i, data in enumerate(tokens):
                if not other.feed(data, commit=False):
                    return i
            return len(tokens)
        finally:
            del self.buf[length:]

    @property
    def watching(self) -> bool:
        return any(f.rule or f.object_rule for f in self.stack)

    def string_targets(self) -> list[bytes] | None:
        """Inside a string item of the innermost watched array: the byte runs that, followed by a
        quote, would finish a string already seen there. None when that cannot be told cheaply
        (escape pending, a split UTF-8 character): then every token is tried."""
        top = self.stack[-1]
        if not self.in_string or self.escaped or top.rule is None or top.item_start is None:
            return None
        if top.rule.contains is not None:  # any string item may count: every closing quote is tried
            return None
        try:
            prefix = json.loads(bytes(self.buf[top.item_start :]) + b'"')
        except (ValueError, UnicodeDecodeError):
            return None
        seen = [v[1] for v in top.seen if v[0] == "s" and v[1].startswith(prefix)]
        return [json.dumps(v[len(prefix) :], ensure_ascii=False)[1:-1].encode() + b'"' for v in seen]

    def innermost(self, objects: bool = False) -> tuple[_Frame | None, int]:
        """The innermost watched array (any-order object with ``objects``), and how many
        containers are open inside it: the fewest ``]``/``}`` a token must hold to reach it."""
        for depth in range(len(self.stack) - 1, -1, -1):
            frame = self.stack[depth]
            if frame.object_rule if objects else frame.rule:
                return frame, len(self.stack) - 1 - depth
        return None, 0

    def _value_path(self) -> Path:
        if not self.stack:
            return ()
        top = self.stack[-1]
        return (*top.path, top.index if top.kind == "a" else top.key)

    def _start_value(self, kind: str) -> None:
        top = self.stack[-1] if self.stack else None
        if top is not None and top.kind == "a" and top.rule and top.item_start is None:
            top.item_start = len(self.buf) - 1
        if self.value_rules:
            path = self._value_path()
            rule = next((r for p, r in self.value_rules if matches(p, path)), None)
            if rule is not None:
                self.watched.append(_Watched(len(self.buf) - 1, len(self.stack), kind, rule))

    def _end_watched(self, kind: str, end: int) -> bool:
        """A value of ``kind`` ended at ``end`` (exclusive); False if it fails its place's checks."""
        if not self.watched:
            return True
        top = self.watched[-1]
        if top.kind != kind or top.depth != len(self.stack):
            return True
        self.watched.pop()
        return self._passes(top, end)

    def _passes(self, watched: _Watched, end: int) -> bool:
        text = bytes(self.buf[watched.start : end])
        return all(_valid_text(schema, text) for schema in watched.rule.schemas)

    def opens_to_watched(self) -> int | None:
        """The fewest containers the next token must open to begin a value under a ValueRule
        (0: one may begin right here); None when no checked place lies below this point."""
        if not self.stack:
            if self.buf.strip():
                return None  # the top-level value is a number or literal being written
            return min(len(p) for p, _ in self.value_rules)
        where = self.stack[-1].path
        below = [len(p) - len(where) - 1 for p, _ in self.value_rules
                 if len(p) > len(where) and matches(p[: len(where)], where)]
        return min(below) if below else None

    def root_scalar_ok(self) -> bool:
        """Whether a number or literal written at the top level (it ends with the output, with no
        delimiter to tell) passes its checks."""
        if not self.watched or not self.in_scalar or self.stack:
            return True
        return self._passes(self.watched[-1], len(self.buf))

    def _end_value(self, end: int, commit: bool) -> bool:
        """A value ended at ``end`` (exclusive); False if the item breaks its array's rule."""
        top = self.stack[-1] if self.stack else None
        if top is None or top.kind != "a" or top.rule is None or top.item_start is None:
            return True
        text = bytes(self.buf[top.item_start : end]).decode("utf-8", errors="strict")
        if top.rule.contains is not None and is_valid_instance(top.rule.contains, json.loads(text)):
            if top.rule.max_contains is not None and top.count >= top.rule.max_contains:
                return False
            top.count += 1
        if top.rule.unique:
            value = canonical(json.loads(text, parse_float=Decimal, parse_int=Decimal))
            if value in top.seen:
                return False
            if commit:
                top.seen.add(value)
            else:  # a trial copy: keep its own additions apart from the shared set
                top.seen = {*top.seen, value}
        top.item_start = None
        return True

    def feed(self, data: bytes, commit: bool = True) -> bool:
        """Advance over ``data``; False as soon as a watched array's rule would be broken."""
        for byte in data:
            self.buf.append(byte)
            ch = chr(byte)
            if self.in_string:
                self.in_string, self.escaped = string_char(ch, self.escaped)
                if not self.in_string:
                    if self.string_is_key:
                        top = self.stack[-1]
                        top.key = json.loads(bytes(self.buf[self.key_start :]).decode("utf-8"))
                        if top.object_rule is not None:
                            if top.key in top.keys:
                                return False
                            top.keys = top.keys | {top.key}
                    elif not (self._end_value(len(self.buf), commit) and self._end_watched("s", len(self.buf))):
                        return False
                continue
            if self.in_scalar:
                if ch in ",]} \n\r\t":
                    self.in_scalar = False
                    if not (self._end_value(len(self.buf) - 1, commit) and self._end_watched("n", len(self.buf) - 1)):
                        return False
                else:
                    continue
            if ch == '"':
                parent = self.stack[-1] if self.stack else None
                self.in_string = True
                self.string_is_key = parent is not None and parent.kind == "o" and parent.expect_key
                if self.string_is_key:
                    self.key_start = len(self.buf) - 1
                else:
                    self._start_value("s")
            elif ch in "[{":
                self._start_value("c")
                path = self._value_path()
                frame = _Frame("a" if ch == "[" else "o", path, start=len(self.buf) - 1)
                if ch == "[":
                    frame.rule = next((r for p, r in self.array_rules if matches(p, path)), None)
                else:
                    frame.object_rule = next((r for p, r in self.object_rules if matches(p, path)), None)
                self.stack.append(frame)
            elif ch in "]},:" and not self.stack:
                return False  # nothing open to close or continue: not a value this scanner can follow
            elif ch in "]}":
                closed = self.stack.pop()
                if closed.rule and closed.rule.contains is not None and closed.count < closed.rule.min_contains:
                    return False
                rule = closed.object_rule
                if rule and not (rule.closes(closed.keys) and (
                        rule.schema is None or _valid_text(rule.schema, bytes(self.buf[closed.start :])))):
                    return False
                if not (self._end_value(len(self.buf), commit) and self._end_watched("c", len(self.buf))):
                    return False
            elif ch == ",":
                top = self.stack[-1]
                if top.kind == "a":
                    top.index += 1
                else:
                    top.expect_key = True
                    names = top.object_rule.names if top.object_rule else None
                    if names is not None and names <= top.keys:
                        return False  # every key that could follow would repeat one
            elif ch == ":":
                self.stack[-1].expect_key = False
            elif ch not in " \n\r\t":
                self.in_scalar = True
                self._start_value("n")
        return self._key_can_finish()

    def _key_can_finish(self) -> bool:
        """Inside a key of an any-order object with known names: the key so far still begins a
        name not yet used (else every way to finish it would repeat one)."""
        if not self.in_string or not self.string_is_key or self.escaped:
            return True
        top = self.stack[-1]
        rule = top.object_rule
        if rule is None or rule.names is None:
            return True
        try:
            prefix = json.loads(bytes(self.buf[self.key_start :]) + b'"')
        except (ValueError, UnicodeDecodeError):
            return True  # a split escape or character: told at the next token
        return any(name.startswith(prefix) for name in rule.names - top.keys)


class RulesMatcher:
    """``inner`` plus the array and object rules at their paths; same Matcher protocol."""

    def __init__(self, inner: Matcher, table: TokenTable,
                 rules: tuple[tuple[Path, ArrayRule | ObjectRule | ValueRule], ...], eos_token_id: int | None = None) -> None:
        self.inner = inner
        self.eos_token_id = eos_token_id
        self.table = table
        self.token_bytes = table.token_bytes
        self.rules = rules
        self.scanner = _Scanner(rules)
        self.tokens: list[int] = []
        self._error: str | None = None
        self._dead_end: str | None = None  # the last mask was emptied by a value check (why, for the error)

    def _breaks_rule(self, token: int) -> bool:
        return self.scanner.trial([self.token_bytes[token]]) == 0

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        self.inner.fill_bitmask(bitmask)
        self.restrict(bitmask)

    def restrict(self, bitmask: np.ndarray) -> None:
        """Remove from ``inner``'s mask (already in ``bitmask``) the tokens that break a rule."""
        t = self.table
        words = bitmask.view(np.uint32)
        allowed = ((words[t.enders >> 5] >> (t.enders & 31).astype(np.uint32)) & 1).astype(bool)
        # A token may open a watched container and break its rule at once (`{}`, `[]`, two keys).
        candidates = set(t.enders[allowed & (t.openers >= 1) & ((t.brackets >= 1) | (t.quotes >= 4))].tolist())
        if self.scanner.watching:
            candidates.update(self._object_candidates(allowed, bitmask))
            if self.scanner.innermost()[0] is not None:
                candidates.update(self._candidates(allowed))
        if self.scanner.value_rules:
            candidates.update(self._value_candidates(allowed))
            if self.eos_token_id is not None and not self.scanner.root_scalar_ok():
                eos = self.eos_token_id  # the output would end on a value that fails its check
                words[eos >> 5] &= np.uint32(~(1 << (eos & 31)) & 0xFFFFFFFF)
        self._dead_end = None
        had_any = bool(self.scanner.watched) and bool(words.any())
        for token in candidates:
            if self._breaks_rule(token):
                words[token >> 5] &= np.uint32(~(1 << (token & 31)) & 0xFFFFFFFF)
        if had_any and not words.any():  # a dead end: say which check closed the last ways forward
            keyword, _, pointer = self.scanner.watched[-1].rule.checks[0]
            self._dead_end = (f"every way to finish the value here fails its `{keyword}` (at {pointer}), which no "
                              "grammar expresses and is checked when the value ends")

    def _value_candidates(self, allowed: np.ndarray) -> list[int]:
        """The allowed tokens that could end a value under a ValueRule (a superset: each is tried)."""
        t, scanner = self.table, self.scanner
        pick = np.zeros(len(t.enders), dtype=bool)
        if scanner.watched:  # the innermost watched value ends first: a token ending any of them ends it
            watched = scanner.watched[-1]
            if watched.kind == "c":
                pick |= t.brackets >= len(scanner.stack) - watched.depth
            elif watched.kind == "s":
                pick |= t.quotes >= 1
            else:
                pick |= t.delims
        opens = scanner.opens_to_watched()
        if opens is not None:  # a whole checked value in one token: it opens what leads there, then ends
            whole = (t.openers >= opens) & ((t.quotes >= 2) | t.delims | (t.brackets >= 1))
            if scanner.in_string or scanner.in_scalar:  # what is being written ends first
                whole &= (t.quotes >= 1) if scanner.in_string else t.delims
            pick |= whole
        return _ids(t.enders[allowed & pick])

    def _object_candidates(self, allowed: np.ndarray, bitmask: np.ndarray) -> list[int]:
        """The allowed tokens that could complete a key of, or close, an any-order object."""
        t, scanner = self.table, self.scanner
        frame, depth = scanner.innermost(objects=True)
        if frame is None:
            return []
        if depth:  # what is open inside the object closes first
            pick = t.brackets >= depth
        elif scanner.in_string and scanner.string_is_key:
            rule = frame.object_rule  # set: innermost(objects=True) finds only any-order objects
            if rule is not None and rule.names is not None:  # any token may lead the key away from unused names
                return _ids(np.flatnonzero(np.unpackbits(bitmask.view(np.uint8), bitorder="little")))
            pick = t.quotes >= 1
        elif frame.expect_key:  # a key starts with a quote, or the object closes
            pick = (t.quotes >= 1) | (t.brackets >= 1)
        else:  # a value: the next key comes after a comma, and a string value ends at a quote first
            pick = (t.commas >= 1) | (t.brackets >= 1)
            if scanner.in_string:
                pick &= t.quotes >= 1
        return _ids(t.enders[allowed & pick])

    def _candidates(self, allowed: np.ndarray) -> list[int]:
        """The allowed tokens that could complete a watched item here (a superset: each is tried)."""
        t, scanner = self.table, self.scanner
        frame, needed = scanner.innermost()
        if frame is not None and frame.rule is not None and not frame.rule.unique:
            rule = frame.rule
            # contains only: while `slack` more matches are allowed, a token breaks a rule only by
            # closing the array short of minContains, or by completing more than `slack` items
            # (so holding at least `slack` commas). Spares validating every string-ending token.
            slack = None if rule.max_contains is None else rule.max_contains - frame.count
            if slack is None or slack > 0:
                pick = t.brackets >= max(needed, 1)
                if slack is not None:
                    pick |= t.commas >= slack
                return _ids(t.enders[allowed & pick])
        if needed:  # an item nested k deep ends only with a token that closes k containers
            return _ids(t.enders[allowed & (t.brackets >= needed)])
        if scanner.in_string:  # a string item ends at a quote
            ids = _ids(t.enders[allowed & (t.quotes >= 1)])
            targets = scanner.string_targets()
            if targets is None:
                return ids
            # Only a token spelling the rest of a seen string, then its quote, can repeat it;
            # a token with a backslash might spell it with escapes: tried too.
            return [i for i in ids if b"\\" in t.token_bytes[i] or t.token_bytes[i].startswith(tuple(targets))] \
                if targets else []
        if scanner.in_scalar:  # a number or literal ends at a delimiter
            return _ids(t.enders[allowed & t.delims])
        # between items: a whole item fits in the token (two quotes, or a delimiter)
        return _ids(t.enders[allowed & ((t.quotes >= 2) | t.delims)])

    def consume(self, token_id: int) -> bool:
        if token_id < len(self.token_bytes) and not self.scanner.feed(self.token_bytes[token_id]):
            self._error = "the token would break an array's uniqueItems or contains rule, repeat a key or close an object too soon"
            self._refeed(self.tokens)  # the refused token was partly scanned: back to before it
            return False
        self.tokens.append(token_id)
        return self.inner.consume(token_id)

    def forced_tokens(self) -> list[int]:
        forced = self.inner.forced_tokens()
        if not forced:
            return forced
        return forced[: self.scanner.trial([self.token_bytes[t] for t in forced])]

    def is_accepting(self) -> bool:
        return self.inner.is_accepting() and self.scanner.root_scalar_ok()

    def is_stopped(self) -> bool:
        return self.inner.is_stopped()

    def rollback(self, num_tokens: int) -> None:
        self._dead_end = None
        self.inner.rollback(num_tokens)
        self._refeed(self.tokens[: len(self.tokens) - num_tokens])

    def _refeed(self, tokens: list[int]) -> None:
        """A fresh scanner over ``tokens``: the state after exactly those tokens."""
        self.scanner, self.tokens = _Scanner(self.rules), []
        for token in tokens:
            self.scanner.feed(self.token_bytes[token])
            self.tokens.append(token)

    def error(self) -> str | None:
        return self._error or self._dead_end or self.inner.error()

    def hit_limit(self) -> bool:
        return self._error is None and self.inner.hit_limit()


def _ids(tokens: np.ndarray) -> list[int]:
    """A 1-D array of token ids as a list of ints."""
    ids: list[int] = tokens.tolist()
    return ids


@dataclass(frozen=True)
class TokenTable:
    """Per vocabulary: every token's bytes; for the tokens that can end a JSON value (``enders``),
    how many ``]``/``}``, ``[``/``{``, quotes and commas each holds and whether it holds a delimiter."""

    token_bytes: list[bytes]
    enders: np.ndarray
    brackets: np.ndarray
    openers: np.ndarray
    quotes: np.ndarray
    commas: np.ndarray
    delims: np.ndarray

    @classmethod
    def build(cls, token_bytes: list[bytes]) -> TokenTable:
        ids = [i for i, b in enumerate(token_bytes) if _ENDERS.intersection(b)]
        pick = [token_bytes[i] for i in ids]
        return cls(
            token_bytes,
            np.array(ids, dtype=np.int64),
            np.array([b.count(b"]") + b.count(b"}") for b in pick], dtype=np.int64),
            np.array([b.count(b"[") + b.count(b"{") for b in pick], dtype=np.int64),
            np.array([b.count(b'"') for b in pick], dtype=np.int64),
            np.array([b.count(b",") for b in pick], dtype=np.int64),
            np.array([bool(_DELIMS.intersection(b)) for b in pick], dtype=bool),
        )
