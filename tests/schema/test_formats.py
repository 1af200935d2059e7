"""Standard ``format`` values as exact regexes, and draft 7 ``content*`` keywords.

The format table is written in syntax Python's ``re`` shares with the engine, so most
cases run through ``re.fullmatch`` (fast); one valid and one invalid instance per hard
rule also go token by token through the engine's mask. When the shared
JSON-Schema-Test-Suite is present, every optional/format group is replayed as well.
"""

from __future__ import annotations

import re

import pytest

from constrain.errors import UnsupportedSchemaError
from constrain.schema import formats
from constrain.schema.strings import content_is_asserted, rewrite_string_keywords
from tests.conftest import mask_walk, read_jsonl_gz
from tests.schema.test_patterns import check

CASES: dict[str, tuple[list[str], list[str]]] = {
    "date": (
        ["1963-06-19", "2020-02-29", "2000-02-29", "0400-02-29", "2021-02-28", "2020-04-30", "0001-01-01"],
        ["2020-02-30", "2021-02-29", "1900-02-29", "2100-02-29", "0100-02-29", "2020-04-31", "2020-13-01",
         "2020-00-10", "2020-01-00", "2020-1-01", "20200101", "2020-01-01\n", "+2020-01-01", "২020-01-01"],
    ),
    "time": (
        ["08:30:06Z", "23:59:60Z", "23:59:60+00:00", "01:29:60+01:30", "23:29:60+23:30", "15:59:60-08:00",
         "00:29:60-23:30", "00:00:60+00:01", "23:20:50.52z", "12:34:56-00:00"],
        ["22:59:60Z", "23:58:60Z", "23:59:60+01:00", "23:59:60-00:30", "23:59:61Z", "24:00:00Z",
         "00:60:00Z", "01:02:03+24:00", "01:02:03+00:60", "12:00:00", "08:30:06 PST", "01:02:03Z+00:30"],
    ),
    "date-time": (
        ["1963-06-19T08:30:06.283185Z", "1998-12-31T15:59:60.123-08:00", "1963-06-19t08:30:06z"],
        ["1990-02-31T15:59:59.123-08:00", "1998-12-31T23:59:61Z", "1998-12-31T22:59:60Z",
         "1985-04-12T23:20:50+01", "1963-06-19 08:30:06Z", "2016-12-31T24:59:60+01:00"],
    ),
    "duration": (
        ["P4DT12H30M5S", "P4Y", "PT0S", "P1M", "PT36H", "P2W", "P1Y2M", "P1M2D", "PT1M2S"],
        ["P", "PT", "P1YT", "PT1D", "P2D1Y", "P1D2H", "P1Y2W", "PT0.5S", "P1Y2D", "PT1H2S", "-P1D", "P1WT1H"],
    ),
    "email": (
        ["joe.bloggs@example.com", "te~st@example.com", '"joe bloggs"@example.com', '"a\\"b"@example.com',
         "joe.bloggs@[127.0.0.1]", "joe.bloggs@[IPv6:::1]", "a@b"],
        ["2962", ".test@example.com", "test.@example.com", "te..st@example.com", "joe.bloggs@invalid=domain.com",
         "joe.bloggs@[127.0.0.300]", "@example.com", "joe.bloggs@", "joe bloggs@example.com", "a@-b.com",
         "a@b-.com", "a@[IPv6:1:2:3:4:5:6:7::8]", "a@[foo:bar]", "é@example.com"],
    ),
    "idn-email": (
        ["δοκιμή@example.com", '"δοκιμή"@example.com', "\x80@example.com", "𝕏@example.com"],
        ["2962", "user＠example.com", ".a@example.com", "a@exa mple.com"],
    ),
    "hostname": (
        ["www.example.com", "hostname", "1host", "a--b.com", "a" * 63 + ".com", ".".join(["a" * 63] * 3) + ".abc"],
        ["", ".", ".example", "example.", "-hostname", "hostname-", "host_name", "a" * 64 + ".com",
         ".".join(["a" * 63] * 4), "example．com", "xn--X", "XN--aa---o47jg78q", "ab--c", "\u212aelvin.com"],
    ),
    "ipv4": (
        ["192.168.0.1", "0.0.0.0", "255.255.255.255", "10.20.30.40"],
        ["127.0.0.0.1", "256.256.256.256", "127.0", "087.10.0.1", "0x7f000001", "192.168.0.1\n", "1.2.3.4/8"],
    ),
    "ipv6": (
        ["::1", "::", "d6::", "1:d6::42", "1::d6:192.168.0.1", "::ffff:192.168.0.1", "1:2:3:4:5:6:7:8",
         "1:2:3:4:5:6::8", "1000:1000:1000:1000:1000:1000:255.255.255.255"],
        ["12345::", "::abcef", "1:1:1:1:1:1:1:1:1", ":2:3:4:5:6:7:8", "1:2:3:4:5:6:7:", "1::d6::42",
         "1::2:192.168.256.1", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::", "::ffff:192.168.0.01", "fe80::a%eth1", "[::1]"],
    ),
    "uri": (
        ["http://foo.bar/?baz=qux#quux", "http://-.~_!$&'()*+,;=:%40:80%2f::::::@example.com", "urn:a:b",
         "ldap://[2001:db8::7]/c=GB?objectClass?one", "tel:+1-816-555-1212", "http://[V1.fe]", "a:"],
        ["//foo.bar/", "/abc", "abc", "http:// x.com", "bar,baz:foo", "https://[@example.org/t",
         "https://example.org/foobar®.txt", "http://example.com/%6G", "1http://x", "http://x.com:abc/",
         "http://[::ffff:01.2.3.4]", "http:/[::1]", 'https://e.org/"'],
    ),
    "uri-reference": (
        ["http://foo.bar/?baz=qux#quux", "//foo.bar/?baz=qux#quux", "/abc", "abc", "#fragment", "", "?q=1",
         "//", "./this:that"],
        ["\\\\WINDOWS\\fileshare", "#frag\\ment", "/foobar®.txt", "/%zz", '/a"b', "/[::1]", "1:b",
         "//a@b@example.com/", "//example.com:abc/p"],
    ),
    "iri": (
        ["http://ƒøø.ßår/?∂éœ=πîx#πîüx", "http://[2001:db8::1]", "http://ƒøø.ßår/?q=\U000f0000", "file:/etc/hosts"],
        ["http://2001:0db8:85a3:0000:0000:8a2e:0370:7334", "/abc", "âππ", "http://ƒøø.ßår/\n",
         "http://ƒøø.ßår/\U000f0000"],
    ),
    "iri-reference": (["//ƒøø.ßår/?∂éœ=πîx#πîüx", "/âππ", "âππ", "#ƒrägmênt"], ["#ƒräg\\mênt", "\\\\WINDOWS\\x"]),
    "uri-template": (
        ["http://example.com/dictionary/{term:1}/{term}", "", "a%41b", "{+var}", "{x,y}", "{a.b}", "{v:1000}",
         "a'b", "{%41}", "{var*}"],
        ["{term", "{}", "{a,,b}", "{v:0}", "{v:10000}", "foo}bar", "{a..b}", "{v:01}", "a b", "{a,}",
         "{var=def}", "{,+var}", "{=var}"],
    ),
    "json-pointer": (
        ["", "/", "/foo/bar~0/baz~1/%a", "/foo//bar", "/i\\j", "/foo\x00bar\n", "/~1~0"],
        ["#", "#/", "/foo/bar~", "/~2", "/~-1", "a", "0"],
    ),
    "relative-json-pointer": (
        ["1", "0/foo/bar", "2/0/baz/1/zip", "0#", "120/foo/bar", "0//"],
        ["/foo/bar", "-1/foo/bar", "+1/foo/bar", "0##", "01/a", "01#", "", "1#/foo/bar", "1\n", "١/foo"],
    ),
    "uuid": (
        ["2EB8AA08-AA98-11EA-B4AA-73B441D16380", "2eb8aa08-AA98-11ea-B4Aa-73B441D16380"],
        ["2eb8aa08-aa98-11ea-b4aa-73b441d1638", "2eb8aa08aa9811eab4aa73b441d16380", "urn:uuid:2eb8aa08-aa98-11ea-b4aa-73b441d16380",
         "2eb8aa08-aa98-11ea-b4ga-73b441d16380"],
    ),
}


def full_match(name: str, value: str) -> bool:
    regexes = formats.format_regexes(name)
    assert regexes is not None, name
    return all(re.fullmatch(r, value) for r in regexes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_format_regex_is_exact_on_cases(name: str) -> None:
    valid, invalid = CASES[name]
    assert [v for v in valid if not full_match(name, v)] == []
    assert [v for v in invalid if full_match(name, v)] == []


def test_every_known_format_is_tested() -> None:
    assert set(formats.EXACT) | set(formats.SUBSET) == set(CASES) | {"idn-hostname"}


@pytest.mark.parametrize(
    ("name", "valid", "invalid"),
    [
        ("date", ["2020-02-29"], ["2021-02-29", "2020-02-30"]),
        ("time", ["15:59:60-08:00"], ["23:59:60-01:00", "12:00:00"]),
        ("date-time", ["1998-12-31T23:59:60Z"], ["1998-12-31T23:58:60Z"]),
        ("hostname", ["a--b.example"], ["a" * 64, ".".join(["a" * 63] * 4), "xn--X"]),
        ("email", ['"a b"@[IPv6:::1]'], ["a..b@c"]),
        ("ipv6", ["1::d6:192.168.0.1"], ["1::2:192.168.256.1"]),
        ("uri", ["http://[V1.fe]/x?y#z"], ["http://x/%zz"]),
        ("uuid", ["00000000-0000-0000-0000-000000000000"], ["00000000-0000-0000-0000-00000000000"]),
        ("duration", ["P1Y2M3DT4H5M6S"], ["P1Y2D"]),
    ],
)
def test_format_through_the_engine(tokenizer, name: str, valid: list, invalid: list) -> None:
    schema = {"type": ["string", "integer"], "format": name}
    check(tokenizer, schema, [*valid, 7], invalid)


def test_format_without_type_leaves_other_types_alone(tokenizer) -> None:
    check(tokenizer, {"format": "date"}, ["2024-02-29", 12, None, {"a": 1}, [1], False], ["2023-02-29"])


def test_regex_format_is_an_error_naming_format() -> None:
    with pytest.raises(UnsupportedSchemaError) as info:
        rewrite_string_keywords({"type": "string", "format": "regex"}, "/properties/re")
    assert (info.value.keyword, info.value.pointer) == ("format", "/properties/re/format")


def test_draft7_content_encoding_is_base64_exact(tokenizer) -> None:
    draft7 = "http://json-schema.org/draft-07/schema#"
    schema = {"contentEncoding": "base64"}
    rewritten = rewrite_string_keywords(schema, "", dialect=draft7)
    assert re.fullmatch(rewritten["pattern"], "eyJmb28iOiAiYmFyIn0K")
    for bad in ("eyJmb28iOi%iYmFyIn0K", "abc", "ab=c", "a==="):
        assert not re.fullmatch(rewritten["pattern"], bad)
    check(tokenizer, schema, ["eyJmb28iOiAiYmFyIn0K", "e30=", "", 100], ["{}", "e30"])


def test_content_keywords_are_annotations_from_2019_09() -> None:
    annotated = {"type": "string", "contentMediaType": "application/json", "contentEncoding": "base64"}
    assert rewrite_string_keywords(annotated, "", dialect="https://json-schema.org/draft/2020-12/schema") == {
        "type": "string"
    }
    assert content_is_asserted(None) and content_is_asserted("http://json-schema.org/draft-07/schema#")
    with pytest.raises(UnsupportedSchemaError) as info:
        rewrite_string_keywords(annotated, "/p")
    assert info.value.keyword == "contentMediaType" and info.value.pointer == "/p/contentMediaType"
    with pytest.raises(UnsupportedSchemaError, match="contentEncoding"):
        rewrite_string_keywords({"contentEncoding": "quoted-printable"}, "")


def test_end_to_end_through_compile_constraint(tokenizer) -> None:
    """The normaliser applies the rewrite to raw user schemas (no pre-rewritten input)."""
    import json

    from constrain import compile_constraint

    def walks(schema: dict, value: object) -> bool:
        matcher = compile_constraint({"type": "json", "value": schema}, tokenizer).matcher()
        for token in tokenizer.encode(json.dumps(value, separators=(",", ":")), add_special_tokens=False):
            if not matcher.consume(token):
                return False
        return matcher.is_accepting()

    day = {"type": "object", "properties": {"d": {"format": "date"}}, "required": ["d"]}
    assert walks(day, {"d": "2024-02-29"}) and walks(day, {"d": 3})
    assert not walks(day, {"d": "2023-02-29"})
    assert walks({"format": "time"}, "15:59:60-08:00") and not walks({"format": "time"}, "23:59:60+01:00")


def test_suite_format_groups_never_accept_invalid() -> None:
    """Replay the JSON-Schema-Test-Suite's format groups: exact formats agree on every
    string, subset formats never accept an invalid one."""
    rows = read_jsonl_gz("json-schema-test-suite.jsonl.gz")
    checked = 0
    for row in rows:
        if "/optional/format/" not in row["category"]:
            continue
        name = row["schema"].get("format")
        if formats.format_regexes(name) is None:
            continue
        for test in row["tests"]:
            if not isinstance(test["data"], str):
                continue
            got = full_match(name, test["data"])
            if test["valid"] and name in formats.EXACT:
                assert got, (row["category"], test["description"], test["data"])
            if not test["valid"]:
                assert not got, (row["category"], test["description"], test["data"])
            checked += 1
    assert checked > 500


def test_a_pattern_beside_a_format_lexes_within_the_engine_s_fuel(tokenizer):
    # The engine intersects the two regexes lazily; with its default fuel per token this valid
    # date was refused mid-string ("too many expressions constructed").
    schema = {"type": "string", "format": "date-time", "pattern": "\\d\\d\\d\\d-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ"}
    assert mask_walk(tokenizer, schema, '"2016-01-05T16:51:00Z"')
    assert not mask_walk(tokenizer, schema, '"2016-01-05T16:51:00+01:00"')
