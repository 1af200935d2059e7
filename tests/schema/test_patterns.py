"""ECMA-262 ``pattern`` -> engine regex: ECMA meaning, search semantics, exact rejections.

Every rewrite is checked with valid and invalid strings walked token by token through the
engine's mask (compact JSON, as generation writes it); the pure translation is also checked
with Python's ``re`` where the output uses no ``\\p{..}`` (the syntax both dialects share).
"""

from __future__ import annotations

import json
import re
import warnings

import pytest

from constrain.constraints import get_engine
from constrain.engines import EngineGrammar, JsonOptions
from constrain.errors import SchemaWarning, UnsupportedSchemaError
from constrain.schema.patterns import ecma_to_engine, is_ecma_regex
from constrain.schema.strings import rewrite_string_keywords


def accepts(tokenizer, schema: dict, value: object) -> bool:
    """Does the engine's mask let the compact serialisation of ``value`` through, then stop?"""
    grammar = get_engine("llguidance", tokenizer).compile(EngineGrammar("json_schema", schema, JsonOptions()))
    matcher = grammar.matcher()
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for token in tokenizer.encode(text, add_special_tokens=False):
        if not matcher.consume(token):
            return False
    return matcher.is_accepting()


def check(tokenizer, schema: dict, valid: list, invalid: list) -> None:
    """Rewrite ``schema`` as the normaliser will, then demand exactly the expected verdicts."""
    rewritten = rewrite_string_keywords(schema, "")
    wrong = [v for v in valid if not accepts(tokenizer, rewritten, v)]
    wrong += [v for v in invalid if accepts(tokenizer, rewritten, v)]
    assert not wrong, f"{schema} -> {rewritten}: wrong verdict for {wrong!r}"


# ECMA \s: WhiteSpace and LineTerminator, including Unicode spaces that Python or Rust differ on.
ECMA_SPACES = [" ", "\t", "\n", "\r", "\v", "\f", "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u202f", "\u3000", "\ufeff"]
NOT_SPACES = ["\x01", "\x1c", "\x85", "\u200b", "–", "a"]


@pytest.mark.parametrize(
    ("pattern", "valid", "invalid"),
    [
        (r"^\d$", ["0", "9"], ["߀", "৪", "a", "00"]),
        (r"^\D$", ["߀", "a"], ["0"]),
        (r"^\w$", ["a", "Z", "_", "5"], ["é", "-"]),
        (r"^\W$", ["é", "-"], ["a", "_"]),
        (r"^\s$", ECMA_SPACES, NOT_SPACES),
        (r"^\S$", NOT_SPACES, ECMA_SPACES),
        (r"^[\S]$", ["a", "\x1c"], [" ", "\ufeff"]),
        (r"^[^\s\d]+$", ["ab", "é"], ["a b", "a1", ""]),
        (r"^a.c$", ["abc", "a\x00c", "a\x85c"], ["a\nc", "a\rc", "a\u2028c", "a\u2029c", "ac"]),
        (r"^abc$", ["abc"], ["abc\n", "xabc", "abcx"]),
        (r"a+", ["xxaayy", "a"], ["", "bbb"]),
        (r"^a|b$", ["ax", "xb", "a", "b"], ["xa", "bx", ""]),
        (r"(^|,)x(,|$)", ["x", "x,y", "y,x", "y,x,z"], ["yx", "xy", ",xy"]),
        (r"^\cC$", ["\x03"], ["\\cC", "C"]),
        (r"^\t\u00e9\u{1F432}\uD83D\uDC09$", ["\té🐲🐉"], ["\té🐲", "\\t"]),
        (r"^🐲*$", ["", "🐲", "🐲🐲"], ["🐉", "D"]),
        (r"^x{2,3}$", ["xx", "xxx"], ["x", "xxxx"]),
        (r"^a{,3}$", ["a{,3}"], ["aaa", "a"]),
        (r"^a+?b*?$", ["a", "aab"], ["b"]),
        (r"^[]a|b$", ["b"], ["a", ""]),
        (r"^[^]$", ["a", "\n"], ["", "ab"]),
        (r"^[\d-z]+$", ["1-z", "z"], ["y", "a"]),
        (r"^[\]\-\\]$", ["]", "-", "\\"], ["a"]),
        (r"^(?<year>\d{4})-(?:\d\d)$", ["2024-01"], ["24-01"]),
        (r"\p{Letter}cole", ["l'école", "l'ecole"], ["L'ÉCOLE", "1cole"]),
        (r"^\P{Lu}+$", ["abc", "é"], ["aBc"]),
        # The engine admits any escape in a class holding every control character (patterns.py).
        (r"^[^\\]+$", ["ab", 'a"b', "a\x01b", "a\nb"], ["a\\b", "\\"]),
        (r'^[^"]+$', ["ab", "a\\b", "a\tb"], ['a"b', '"']),
        (r'^[^"\\]*$', ["", "a\nb"], ['"', "\\", 'a\\"']),
    ],
)
def test_pattern_has_ecma_meaning(tokenizer, pattern: str, valid: list, invalid: list) -> None:
    check(tokenizer, {"type": "string", "pattern": pattern}, valid, invalid)


@pytest.mark.parametrize(
    ("pattern", "valid", "invalid"),
    [
        (r"^\s+$", ECMA_SPACES, NOT_SPACES),
        (r"^[^\s]+$", NOT_SPACES, ECMA_SPACES),
        (r"^(?:foo|ba[rz])\.json$", ["foo.json", "baz.json"], ["foo.jsonx", "fooXjson", "bar.json\n"]),
        (r"x$", ["ax", "x"], ["x\n", "xa"]),
    ],
)
def test_translation_matches_with_python_re(pattern: str, valid: list, invalid: list) -> None:
    """Outputs without \\p{..} are also Python regexes with the same meaning: a fast check."""
    engine_regex = ecma_to_engine(pattern)
    assert engine_regex is not None
    assert all(re.fullmatch(engine_regex, v) for v in valid)
    assert not any(re.fullmatch(engine_regex, v) for v in invalid)


def test_known_format_gives_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rewrite_string_keywords({"type": "string", "format": "uuid"}, "")["pattern"].startswith("^")


@pytest.mark.parametrize("pattern", ["", "a*", "(x)?", "^", "$", "|b"])
def test_pattern_found_in_every_string_is_dropped(pattern: str) -> None:
    assert ecma_to_engine(pattern) is None
    assert "pattern" not in rewrite_string_keywords({"type": "string", "pattern": pattern}, "")


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"^(?=a)a$", "lookaround"),
        (r"^(?!a)", "lookaround"),
        (r"(?<=a)b", "lookaround"),
        (r"(?<!a)b", "lookaround"),
        (r"(a)\1", "backreference"),
        (r"(?<n>a)\k<n>", "backreference"),
        (r"\bword\b", "word boundary"),
        (r"(^a)*", "^ or $"),
        (r"a^b", "^ or $"),
        (r"^(abc", "valid ECMA-262"),
        (r"\a", "valid ECMA-262"),
        (r"(?i)abc", "valid ECMA-262"),
        (r"(?P<name>x)", "valid ECMA-262"),
        (r"a**", "valid ECMA-262"),
        (r"[z-a]", "valid ECMA-262"),
        (r"^[]$", "no string"),
    ],
)
def test_inexpressible_pattern_is_an_error_naming_pattern(pattern: str, why: str) -> None:
    with pytest.raises(UnsupportedSchemaError) as info:
        rewrite_string_keywords({"type": "string", "pattern": pattern}, "/properties/code")
    assert info.value.keyword == "pattern"
    assert info.value.pointer == "/properties/code/pattern"
    assert why in info.value.message


def test_ecma_syntax_check() -> None:
    assert is_ecma_regex(r"(?<n>x)\k<n>") and is_ecma_regex(r"(?<=a+)b") and is_ecma_regex("[^]")
    assert not is_ecma_regex(r"^(abc]") and not is_ecma_regex(r"\a") and not is_ecma_regex("(?i)abc")


def test_pattern_constrains_strings_only(tokenizer) -> None:
    check(tokenizer, {"pattern": "^a*$"}, ["aaa", 12, 1.5, None, True, {}, []], ["abc"])
    check(tokenizer, {"type": ["string", "null"], "pattern": r"^\d+$"}, ["12", None], ["x", 12])
    # A node that cannot be a string never sees the pattern, even one we could not translate.
    assert rewrite_string_keywords({"type": "integer", "pattern": "(?=x)"}, "") == {"type": "integer"}


def test_pattern_format_and_lengths_intersect(tokenizer) -> None:
    schema = {"type": "string", "format": "date", "pattern": "-02-", "minLength": 10, "maxLength": 10}
    check(tokenizer, schema, ["2024-02-29", "2023-02-28"], ["2023-02-29", "2024-03-01", "2024-02-3", "02-"])
    nested = {"type": "string", "pattern": "^[a-z]+$", "allOf": [{"maxLength": 3}], "format": "hostname"}
    rewritten = rewrite_string_keywords(nested, "")
    assert rewritten["allOf"][0] == {"maxLength": 3}  # the node's own allOf is kept
    check(tokenizer, nested, ["abc", "a"], ["abcd", "ab-", "a.b", "ABC"])


def test_unknown_format_is_dropped_with_a_warning(tokenizer) -> None:
    with pytest.warns(SchemaWarning, match="topic"):
        rewritten = rewrite_string_keywords({"type": "string", "format": "topic", "maxLength": 2}, "/x")
    assert rewritten == {"type": "string", "maxLength": 2}
    with pytest.warns(SchemaWarning):
        check(tokenizer, {"type": "string", "format": "color", "pattern": "^#"}, ["#fff", "#"], ["fff"])
