"""ECMA-262 regexes (JSON Schema ``pattern``) -> the engine's full-match regex dialect.

JSON Schema's ``pattern`` is an *unanchored search* with ECMA-262 (``u`` flag) meaning;
llguidance reads Rust ``regex`` syntax with Unicode classes. They differ on exactly the
places a model would exploit: ``\\d``/``\\w`` are ASCII in ECMA, ``\\s`` is ECMA's own list
of Unicode spaces and line terminators, ``.`` excludes all four line terminators, and
``$`` never matches before a trailing newline. So we parse the ECMA source ourselves and
emit classes as explicit code-point ranges: the engine never applies its own meaning.

What cannot be a regular language (lookaround, backreferences, word boundaries) raises
UnsupportedSchemaError naming ``pattern``: an approximation would accept invalid strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from constrain.errors import UnsupportedSchemaError

MAX_CP = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)

# ECMA-262 character class escapes (ASCII \d \w; \s = WhiteSpace + LineTerminator).
DIGIT: list[tuple[int, int]] = [(0x30, 0x39)]
WORD: list[tuple[int, int]] = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
ECMA_SPACE: list[tuple[int, int]] = [
    (0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
    (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF),
]
LINE_TERMINATORS: list[tuple[int, int]] = [(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]
ANY = "[\\x00-\\U0010ffff]"  # every scalar value, newlines included


def normalize_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged, surrogate-free ranges (the engine matches scalar values only)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        # Cut the surrogate block out: JSON text the engine emits is UTF-8.
        pieces = [(lo, hi)]
        if lo <= _SURROGATES[1] and hi >= _SURROGATES[0]:
            pieces = [(lo, _SURROGATES[0] - 1), (_SURROGATES[1] + 1, hi)]
        for a, b in pieces:
            if a > b:
                continue
            if out and a <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
    return out


def complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """All scalar values not in ``ranges``."""
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in normalize_ranges(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return normalize_ranges(out)


_META = set("\\.+*?()|[]{}^$#&-~ ")


def escape_char(cp: int, *, in_class: bool = False) -> str:
    """One code point as engine regex text, valid for Rust ``regex`` and Python ``re`` alike."""
    ch = chr(cp)
    if ch in _META:
        return "\\" + ch if ch != " " else "\\x20"
    if 0x21 <= cp <= 0x7E or (cp > 0xA0 and ch.isprintable() and not ch.isspace()):
        return ch
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def class_text(ranges: list[tuple[int, int]], props: tuple[str, ...] = (), negated: bool = False) -> str | None:
    """A bracket expression for ``ranges`` (plus ``\\p{..}`` items); None when it matches nothing."""
    if not props:
        ranges = _escape_safe(complement(ranges) if negated else normalize_ranges(ranges))
        negated = False
        if not ranges:
            return None
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return escape_char(ranges[0][0])
    else:
        ranges = normalize_ranges(ranges)
    body = "".join(
        escape_char(lo, in_class=True) if lo == hi else f"{escape_char(lo, in_class=True)}-{escape_char(hi, in_class=True)}"
        for lo, hi in ranges
    )
    return "[" + ("^" if negated else "") + body + "".join(props) + "]"


def _escape_safe(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Work around an engine bug: a class holding all of U+0000-U+001F admits every JSON escape.

    llguidance (1.9) then lets ``\\\\`` and ``\\"`` through even when the class excludes the
    backslash or the quote, so ``[^\\\\]`` would accept a backslash: unsound. Leaving U+0000 out of
    such a class avoids it; the price is that a string holding a NUL character is refused.
    """
    def covers(cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in ranges)

    if ranges and ranges[0][0] == 0 and ranges[0][1] >= 0x1F and not (covers(0x22) and covers(0x5C)):
        return normalize_ranges([(1, ranges[0][1]), *ranges[1:]])
    return ranges


# --- the ECMA-262 syntax tree -------------------------------------------------------------

@dataclass
class Node:
    """One node of a parsed pattern: kind is alt, seq, rep, cls, bol or eol."""

    kind: str
    items: list[Node] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)
    props: tuple[str, ...] = ()
    negated: bool = False
    lo: int = 0
    hi: int | None = None


def _cls(ranges: list[tuple[int, int]], props: tuple[str, ...] = (), negated: bool = False) -> Node:
    return Node("cls", ranges=list(ranges), props=props, negated=negated)


_CLASS_ESCAPES = {
    "d": (DIGIT, False), "D": (DIGIT, True),
    "w": (WORD, False), "W": (WORD, True),
    "s": (ECMA_SPACE, False), "S": (ECMA_SPACE, True),
}
_CONTROL = {"f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_SYNTAX = set("^$\\.*+?()[]{}|/")


class _Parser:
    """Recursive descent over ECMA-262 Pattern (``u`` mode, with Annex B's literal braces)."""

    def __init__(self, source: str, pointer: str) -> None:
        self.s = source
        self.i = 0
        self.pointer = pointer

    def fail(self, why: str) -> UnsupportedSchemaError:
        return UnsupportedSchemaError(
            f"`pattern` {self.s!r} (at {self.pointer or '/'}) {why}", keyword="pattern", pointer=self.pointer
        )

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def parse(self) -> Node:
        node = self.disjunction()
        if self.i < len(self.s):
            raise self.fail(f"is not a valid ECMA-262 regex: unbalanced ')' at offset {self.i}")
        return node

    def disjunction(self) -> Node:
        alts = [self.alternative()]
        while self.peek() == "|":
            self.i += 1
            alts.append(self.alternative())
        return alts[0] if len(alts) == 1 else Node("alt", alts)

    def alternative(self) -> Node:
        items: list[Node] = []
        while self.i < len(self.s) and self.peek() not in "|)":
            items.append(self.term())
        return Node("seq", items)

    def term(self) -> Node:
        ch = self.peek()
        if ch == "^":
            self.i += 1
            return self._no_quantifier(Node("bol"))
        if ch == "$":
            self.i += 1
            return self._no_quantifier(Node("eol"))
        if ch == "\\" and self.peek(1) in ("b", "B"):
            raise self.fail("uses a word boundary (\\b, \\B), which the engine cannot enforce exactly")
        if ch == "(" and self.peek(1) == "?" and (
            self.peek(2) in ("=", "!") or (self.peek(2) == "<" and self.peek(3) in ("=", "!"))
        ):
            raise self.fail("uses lookaround ((?=, (?!, (?<=, (?<!), which the engine cannot enforce")
        atom = self.atom()
        return self.quantifier(atom)

    def _no_quantifier(self, node: Node) -> Node:
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self._brace_quantifier() is not None):
            raise self.fail("is not a valid ECMA-262 regex: an anchor cannot be repeated")
        return node

    def _brace_quantifier(self) -> tuple[int, int | None, int] | None:
        """(min, max, end offset) when a ``{n}``, ``{n,}`` or ``{n,m}`` starts here."""
        j = self.i + 1
        k = j
        while k < len(self.s) and self.s[k].isascii() and self.s[k].isdigit():
            k += 1
        if k == j:
            return None
        lo = int(self.s[j:k])
        hi: int | None = lo
        if k < len(self.s) and self.s[k] == ",":
            m = k + 1
            while m < len(self.s) and self.s[m].isascii() and self.s[m].isdigit():
                m += 1
            hi = int(self.s[k + 1 : m]) if m > k + 1 else None
            k = m
        if k < len(self.s) and self.s[k] == "}":
            return lo, hi, k + 1
        return None

    def quantifier(self, atom: Node) -> Node:
        ch = self.peek()
        if ch in ("*", "+", "?"):
            self.i += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        elif ch == "{" and (brace := self._brace_quantifier()) is not None:
            lo, hi, self.i = brace
            if hi is not None and hi < lo:
                raise self.fail("is not a valid ECMA-262 regex: numbers out of order in {} quantifier")
        else:
            return atom
        if self.peek() == "?":  # lazy: the same language
            self.i += 1
        if self.peek() in ("*", "+") or (self.peek() == "{" and self._brace_quantifier() is not None):
            raise self.fail("is not a valid ECMA-262 regex: nothing to repeat")
        return Node("rep", [atom], lo=lo, hi=hi)

    def atom(self) -> Node:
        ch = self.peek()
        if ch == "(":
            self.i += 1
            if self.peek() == "?":
                if self.peek(1) == ":":
                    self.i += 2
                elif self.peek(1) == "<":
                    end = self.s.find(">", self.i)
                    name = self.s[self.i + 2 : end] if end > 0 else ""
                    if not name or not all(c.isalnum() or c in "_$" for c in name):
                        raise self.fail("is not a valid ECMA-262 regex: bad group name")
                    self.i = end + 1
                else:
                    raise self.fail(f"is not a valid ECMA-262 regex: unknown group '(?{self.peek(1)}'")
            inner = self.disjunction()
            if self.peek() != ")":
                raise self.fail("is not a valid ECMA-262 regex: missing ')'")
            self.i += 1
            return Node("seq", [inner])
        if ch == ".":
            self.i += 1
            return _cls(LINE_TERMINATORS, negated=True)
        if ch == "[":
            return self.char_class()
        if ch == "\\":
            return self.atom_escape()
        if ch in ("*", "+", "?") or (ch == "{" and self._brace_quantifier() is not None):
            raise self.fail("is not a valid ECMA-262 regex: nothing to repeat")
        self.i += 1
        return _cls([(ord(ch), ord(ch))])

    def atom_escape(self) -> Node:
        nxt = self.peek(1)
        if nxt.isdigit() and nxt != "0" or nxt == "k":
            raise self.fail("uses a backreference, which is not a regular language")
        item = self.class_escape(in_class=False)
        if isinstance(item, Node):
            return item
        return _cls([(item, item)])

    def class_escape(self, *, in_class: bool) -> Node | int:
        """The escape at ``self.i`` (a backslash): a code point, or a class Node."""
        self.i += 1
        ch = self.peek()
        if not ch:
            raise self.fail("is not a valid ECMA-262 regex: trailing backslash")
        self.i += 1
        if ch in _CLASS_ESCAPES:
            ranges, negated = _CLASS_ESCAPES[ch]
            return _cls(complement(ranges) if negated else ranges)
        if ch in ("p", "P"):
            if self.peek() != "{" or "}" not in self.s[self.i :]:
                raise self.fail("is not a valid ECMA-262 regex: \\p needs {Property}")
            end = self.s.index("}", self.i)
            name = self.s[self.i + 1 : end]
            self.i = end + 1
            if not name or not all(c.isalnum() or c in "_=" for c in name):
                raise self.fail(f"uses an unknown Unicode property \\{ch}{{{name}}}")
            return _cls([], props=(f"\\{ch}{{{name}}}",))
        if ch in _CONTROL:
            return _CONTROL[ch]
        if ch == "b" and in_class:
            return 0x08
        if ch == "-" and in_class:
            return 0x2D
        if ch == "c":
            letter = self.peek()
            if letter.isascii() and letter.isalpha():
                self.i += 1
                return ord(letter) % 32
            raise self.fail("is not a valid ECMA-262 regex: \\c needs a letter")
        if ch == "0":
            if self.peek().isdigit():
                raise self.fail("uses an octal escape, which ECMA-262 unicode mode forbids")
            return 0
        if ch == "x":
            digits = self.s[self.i : self.i + 2]
            if len(digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in digits):
                self.i += 2
                return int(digits, 16)
            raise self.fail("is not a valid ECMA-262 regex: \\x needs two hex digits")
        if ch == "u":
            return self.unicode_escape()
        if ch in _SYNTAX or not (ch.isascii() and ch.isalnum()):
            return ord(ch)  # Annex B: any non-alphanumeric character escapes to itself
        raise self.fail(f"is not a valid ECMA-262 regex: unknown escape \\{ch}")

    def unicode_escape(self) -> int:
        hexdigits = "0123456789abcdefABCDEF"
        if self.peek() == "{":
            end = self.s.find("}", self.i)
            digits = self.s[self.i + 1 : end] if end > 0 else ""
            if not digits or not all(c in hexdigits for c in digits) or int(digits, 16) > MAX_CP:
                raise self.fail("is not a valid ECMA-262 regex: bad \\u{...} escape")
            self.i = end + 1
            return int(digits, 16)
        digits = self.s[self.i : self.i + 4]
        if len(digits) != 4 or not all(c in hexdigits for c in digits):
            raise self.fail("is not a valid ECMA-262 regex: \\u needs four hex digits")
        self.i += 4
        cp = int(digits, 16)
        # A surrogate pair written as two escapes is one code point in unicode mode.
        if 0xD800 <= cp <= 0xDBFF and self.s[self.i : self.i + 2] == "\\u":
            low = self.s[self.i + 2 : self.i + 6]
            if len(low) == 4 and all(c in hexdigits for c in low) and 0xDC00 <= int(low, 16) <= 0xDFFF:
                self.i += 6
                return 0x10000 + ((cp - 0xD800) << 10) + (int(low, 16) - 0xDC00)
        return cp

    def char_class(self) -> Node:
        self.i += 1
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        props: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise self.fail("is not a valid ECMA-262 regex: missing ']'")
            if self.peek() == "]":
                self.i += 1
                break
            first = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                second = self.class_atom()
                if isinstance(first, int) and isinstance(second, int):
                    if second < first:
                        raise self.fail("is not a valid ECMA-262 regex: range out of order in class")
                    ranges.append((first, second))
                    continue
                # Annex B: a class escape next to '-' leaves the '-' literal ([\d-z] = \d, '-', 'z').
                for item in (first, 0x2D, second):
                    if isinstance(item, int):
                        ranges.append((item, item))
                    else:
                        ranges.extend(item.ranges)
                        props.extend(item.props)
                continue
            if isinstance(first, int):
                ranges.append((first, first))
            else:
                ranges.extend(first.ranges)
                props.extend(first.props)
        return _cls(ranges, tuple(props), negated)

    def class_atom(self) -> Node | int:
        ch = self.peek()
        if ch == "\\":
            return self.class_escape(in_class=True)
        self.i += 1
        return ord(ch)


# --- anchors: an unanchored search becomes a full match ---------------------------------

def _has_anchor(node: Node) -> bool:
    return node.kind in ("bol", "eol") or any(_has_anchor(n) for n in node.items)


def _flatten(node: Node) -> list[Node]:
    """The items of a node read as a sequence (nested unquantified groups spliced in)."""
    if node.kind == "seq":
        out: list[Node] = []
        for item in node.items:
            out.extend(_flatten(item))
        return out
    return [node]


def _alternatives(node: Node) -> list[Node]:
    return node.items if node.kind == "alt" else [node]


def _branches(items: list[Node], fail: UnsupportedSchemaError, depth: int = 0) -> list[tuple[bool, bool, list[Node]]]:
    """(starts at ^, ends at $, anchor-free items) for each way ``items`` can match."""
    if depth > 16:
        raise fail
    start = end = False
    while items and items[0].kind == "bol":
        start, items = True, items[1:]
    while items and items[-1].kind == "eol":
        end, items = True, items[:-1]
    for index in (0, len(items) - 1):
        if items and items[index].kind == "alt" and _has_anchor(items[index]):
            out = []
            for alt in items[index].items:
                spliced = items[:index] + _flatten(alt) + items[index + 1 :]
                for s, e, rest in _branches(spliced, fail, depth + 1):
                    out.append((s or start, e or end, rest))
            return out
    if any(_has_anchor(item) for item in items):
        raise fail
    return [(start, end, items)]


# --- emission -------------------------------------------------------------------------------

def _nullable(node: Node) -> bool:
    if node.kind == "cls":
        return False
    if node.kind == "seq":
        return all(_nullable(n) for n in node.items)
    if node.kind == "alt":
        return any(_nullable(n) for n in node.items)
    if node.kind == "rep":
        return node.lo == 0 or _nullable(node.items[0])
    return True


def _emit(node: Node) -> str | None:
    """Engine regex text for an anchor-free node; None when it matches nothing."""
    if node.kind == "cls":
        return class_text(node.ranges, node.props, node.negated)
    if node.kind == "seq":
        parts = []
        for item in node.items:
            text = _emit(item)
            if text is None:
                return None
            parts.append(text)
        return "".join(parts)
    if node.kind == "alt":
        alts = [t for t in (_emit(n) for n in node.items) if t is not None]
        if not alts:
            return None
        return "(?:" + "|".join(alts) + ")" if len(alts) > 1 else alts[0]
    if node.kind == "rep":
        inner = _emit(node.items[0])
        if inner is None:
            return "" if node.lo == 0 else None
        if inner == "":
            return ""
        if node.hi == node.lo:
            if node.lo == 1:
                return inner
            suffix = f"{{{node.lo}}}"
        elif node.hi is None:
            suffix = {0: "*", 1: "+"}.get(node.lo, f"{{{node.lo},}}")
        else:
            suffix = "?" if (node.lo, node.hi) == (0, 1) else f"{{{node.lo},{node.hi}}}"
        atomic = node.items[0].kind == "cls"
        return f"{inner}{suffix}" if atomic else f"(?:{inner}){suffix}"
    raise AssertionError(node.kind)


def parse_pattern(pattern: str, pointer: str = "") -> Node:
    """The syntax tree of an ECMA-262 pattern; raises UnsupportedSchemaError."""
    return _Parser(pattern, pointer).parse()


def is_ecma_regex(pattern: str) -> bool:
    """Whether ``pattern`` parses as an ECMA-262 regex (backreferences and lookaround included)."""
    try:
        parse_pattern(pattern)
    except UnsupportedSchemaError as exc:
        return "not a valid ECMA-262 regex" not in exc.message and "unknown Unicode property" not in exc.message
    return True


def matches_everything(pattern: str) -> bool:
    """Whether an ECMA-262 pattern finds a match in every string (the translation says so)."""
    try:
        return ecma_to_engine(pattern, "") is None
    except UnsupportedSchemaError:
        return False


def ecma_to_engine(pattern: str, pointer: str = "") -> str | None:
    """A full-match engine regex accepting exactly the strings in which ``pattern`` finds a match.

    None when every string matches (the keyword can be dropped). Raises UnsupportedSchemaError
    for lookaround, backreferences, word boundaries, anchors the rewrite cannot place, a
    pattern that no string matches, and invalid ECMA-262 syntax.
    """
    parser = _Parser(pattern, pointer)
    tree = parser.parse()
    fail = parser.fail("uses ^ or $ inside a repeated or nested group, which the engine cannot enforce")
    parts: list[str] = []
    for alt in _alternatives(tree):
        for start, end, items in _branches(_flatten(alt), fail):
            body = _emit(Node("seq", items))
            if body is None:
                continue
            if not (start and end) and _nullable(Node("seq", items)):
                return None  # found in every string
            prefix = "" if start else ANY + "*"
            suffix = "" if end else ANY + "*"
            parts.append(prefix + body + suffix)
    if not parts:
        raise parser.fail("matches no string at all")
    parts = list(dict.fromkeys(parts))
    return "^" + (parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")") + "$"


def finite_language(engine_regex: str, limit: int) -> list[str] | None:
    """Every string an engine regex (full match) accepts, when they are at most ``limit``.

    Reads the plain part of the syntax (literals, escapes, classes, groups, alternation, ``?``
    and bounded counts); anything else, or a larger language, gives None. A pattern such as
    ``^name:(?:en|nl)$`` is then a list of exact names, which any key order can take.
    """
    if not engine_regex.startswith("^") or not engine_regex.endswith("$") or engine_regex.endswith("\\$"):
        return None  # unanchored: the engine finds it anywhere in a name
    text = engine_regex[1:-1]
    try:
        strings, end = _sequence(text, 0, limit)  # a top-level `|` would leave an anchor to one side
    except _Infinite:
        return None
    return sorted(set(strings)) if end == len(text) else None


class _Infinite(Exception):
    """Outside the syntax :func:`finite_language` reads, or past its limit."""


def _alternation(text: str, i: int, limit: int) -> tuple[list[str], int]:
    out, i = _sequence(text, i, limit)
    while i < len(text) and text[i] == "|":
        more, i = _sequence(text, i + 1, limit)
        out = [*out, *more]
        if len(out) > limit:
            raise _Infinite
    return out, i


def _sequence(text: str, i: int, limit: int) -> tuple[list[str], int]:
    out = [""]
    while i < len(text) and text[i] not in "|)":
        atom, i = _atom(text, i, limit)
        if i < len(text) and text[i] in "?{":
            low, high, i = _count(text, i)
            atom = ["".join(parts) for n in range(low, high + 1) for parts in _power(atom, n, limit)]
        out = [a + b for a in out for b in atom]
        if len(out) > limit:
            raise _Infinite
    return out, i


def _power(atom: list[str], n: int, limit: int) -> list[list[str]]:
    rows: list[list[str]] = [[]]
    for _ in range(n):
        rows = [[*row, s] for row in rows for s in atom]
        if len(rows) > limit:
            raise _Infinite
    return rows


def _count(text: str, i: int) -> tuple[int, int, int]:
    if text[i] == "?":
        low, high, i = 0, 1, i + 1
    else:
        end = text.find("}", i)
        if end < 0:
            raise _Infinite
        body = text[i + 1:end].split(",")
        if len(body) > 2 or not all(b.isdigit() for b in body):
            raise _Infinite  # {n,} is unbounded
        low, high, i = int(body[0]), int(body[-1]), end + 1
    if i < len(text) and text[i] in "?+*":
        raise _Infinite  # lazy or possessive forms, or a repeated count
    return low, high, i


def _atom(text: str, i: int, limit: int) -> tuple[list[str], int]:
    ch = text[i]
    if ch == "(":
        i += 3 if text.startswith("(?:", i) else 1
        if text.startswith("?", i):
            raise _Infinite  # flags or named groups
        inner, i = _alternation(text, i, limit)
        if i >= len(text) or text[i] != ")":
            raise _Infinite
        return inner, i + 1
    if ch == "[":
        return _class(text, i + 1, limit)
    if ch == "\\":
        cp, i = _escape(text, i)
        return [chr(cp)], i
    if ch in _META:
        raise _Infinite
    return [ch], i + 1


def _class(text: str, i: int, limit: int) -> tuple[list[str], int]:
    if text.startswith("^", i):
        raise _Infinite
    chars: list[str] = []
    while i < len(text) and text[i] != "]":
        low, i = _escape(text, i) if text[i] == "\\" else (ord(text[i]), i + 1)
        high = low
        if text.startswith("-", i) and not text.startswith("-]", i):
            high, i = _escape(text, i + 1) if text[i + 1] == "\\" else (ord(text[i + 1]), i + 2)
        if high < low or high - low > limit:
            raise _Infinite
        chars += [chr(c) for c in range(low, high + 1)]
        if len(chars) > limit:
            raise _Infinite
    if i >= len(text):
        raise _Infinite
    return chars, i + 1


def _escape(text: str, i: int) -> tuple[int, int]:
    """The code point of the escape at ``i`` (a backslash), and where it ends."""
    if i + 1 >= len(text):
        raise _Infinite
    ch = text[i + 1]
    if ch in _META:
        return ord(ch), i + 2
    widths = {"x": 2, "u": 4, "U": 8}
    if ch in widths and not text.startswith("{", i + 2):
        digits = text[i + 2:i + 2 + widths[ch]]
        if len(digits) == widths[ch] and all(c in "0123456789abcdefABCDEF" for c in digits):
            return int(digits, 16), i + 2 + widths[ch]
    raise _Infinite  # classes (\d, \p{..}), braced code points, anything unusual
