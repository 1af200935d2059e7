"""JSON Schema ``format`` values as full-match regexes the engine enforces exactly.

Each regex is written from the RFC's ABNF (cited beside it), in the syntax that Rust
``regex`` and Python ``re`` share, so the tests can check the table with ``re.fullmatch``
as well as through the engine. A format is a *list* of regexes: a string must match all
of them (the engine intersects them), which is how length limits join a grammar.

Two kinds of entry:

* ``EXACT``: a string matches iff the RFC (and JSON-Schema-Test-Suite) says it is valid.
* ``SUBSET``: the full language is not regular or not practical (IDNA 2008 tables,
  Punycode, nested regex syntax); the regex accepts a documented subset of valid strings,
  never an invalid one. The model can still write the common case.

Anything else is unknown: an annotation in 2019-09 and later, dropped with a warning.
"""

from __future__ import annotations

# --- RFC 3339 dates and times ---------------------------------------------------------------

# Year 0000 is excluded: RFC 3339 allows it, but Python's datetime (the output check) does not.
_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
FULL_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"

_HOUR = "(?:[01][0-9]|2[0-3])"
_MINUTE = "[0-5][0-9]"
_FRAC = "(?:\\.[0-9]+)?"
_OFFSET = f"(?:[Zz]|[+-]{_HOUR}:{_MINUTE})"


def _leap_second_halves() -> tuple[str, str]:
    """``HH:MM:60[.frac]offset`` exactly when that local time is 23:59 UTC (RFC 3339 5.7).

    Local time and offset are tied minute by minute (1440 pairs per sign); listing the pairs
    costs ~50 KB of regex. Instead two regexes, both required: one ties the hours (given
    whether the offset's minutes carry), the other the minutes. Their intersection is
    exactly the valid leap seconds, and each is small.
    """
    head = f":60{_FRAC}"
    hours = [f"23:{_MINUTE}{head}[Zz]"]
    minutes = [f"{_HOUR}:59{head}[Zz]"]
    for oh in range(24):
        # local = 23:59 - offset: no borrow in the minutes, so the hours add up to 23.
        hours.append(f"{23 - oh:02d}:{_MINUTE}{head}-{oh:02d}:{_MINUTE}")
        # local = 23:59 + offset: the minutes carry unless the offset's minutes are 00.
        hours.append(f"{(oh - 1) % 24:02d}:{_MINUTE}{head}\\+{oh:02d}:00")
        hours.append(f"{oh:02d}:{_MINUTE}{head}\\+{oh:02d}:(?:0[1-9]|[1-5][0-9])")
    for lm in range(60):
        minutes.append(f"{_HOUR}:{lm:02d}{head}-{_HOUR}:{59 - lm:02d}")
        om = (lm + 1) % 60
        minutes.append(f"{_HOUR}:{lm:02d}{head}\\+{_HOUR}:{om:02d}")
    return "(?:" + "|".join(hours) + ")", "(?:" + "|".join(minutes) + ")"


_LEAP_HOURS, _LEAP_MINUTES = _leap_second_halves()
_PLAIN_TIME = f"{_HOUR}:{_MINUTE}:[0-5][0-9]{_FRAC}{_OFFSET}"
# Both must match: a plain time matches both; a leap second only if both halves agree.
FULL_TIME = [f"(?:{_PLAIN_TIME}|{_LEAP_HOURS})", f"(?:{_PLAIN_TIME}|{_LEAP_MINUTES})"]
DATE_TIME = [f"{FULL_DATE}[Tt]{t}" for t in FULL_TIME]

# RFC 3339 Appendix A (ISO 8601 durations).
_N = "[0-9]+"
_DUR_TIME = f"T(?:{_N}H(?:{_N}M(?:{_N}S)?)?|{_N}M(?:{_N}S)?|{_N}S)"
_DUR_DATE = f"(?:{_N}D|{_N}M(?:{_N}D)?|{_N}Y(?:{_N}M(?:{_N}D)?)?)(?:{_DUR_TIME})?"
DURATION = f"P(?:{_DUR_DATE}|{_DUR_TIME}|{_N}W)"

# --- IP addresses ---------------------------------------------------------------------------

_DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # RFC 3986: no leading zeros
IPV4 = f"{_DEC_OCTET}(?:\\.{_DEC_OCTET}){{3}}"
_H16 = "[0-9A-Fa-f]{1,4}"


def _ipv6(h16: str, ipv4: str, *, min_elided: int = 1) -> str:
    """RFC 4291 2.2 text forms: 8 groups, or 6 and an IPv4 tail; '::' stands for >= min_elided groups."""
    forms = []
    for groups, tail in ((8, ""), (6, ipv4)):
        # Uncompressed.
        full = ":".join([h16] * groups)
        forms.append(f"{full}:{tail}" if tail and groups else (full + tail if not tail else tail))
        # '::' with i groups before it and j after, i + j <= groups - min_elided.
        for i in range(groups - min_elided + 1):
            left = ":".join([h16] * i)
            max_right = groups - min_elided - i
            right_parts = []
            for j in range(max_right + 1):
                groups_text = ":".join([h16] * j)
                if tail:
                    right_parts.append(f"{groups_text}:{tail}" if j else tail)
                else:
                    right_parts.append(groups_text)
            right = "(?:" + "|".join(right_parts) + ")"
            forms.append(f"{left}::{right}")
    return "(?:" + "|".join(forms) + ")"


IPV6 = _ipv6(_H16, IPV4)

# --- host names (RFC 1123) ------------------------------------------------------------------

_LD = "[A-Za-z0-9]"
_LDH = "[A-Za-z0-9-]"
# A label: 1-63 letters, digits and hyphens, no hyphen at either end, and never '--' in
# positions 3-4 (reserved: every A-label 'xn--...' would need Punycode and IDNA checks).
HOST_LABEL = f"{_LD}(?:{_LD}|{_LDH}{_LD}|{_LDH}{_LDH}{_LD}|{_LDH}(?:{_LD}{_LDH}|-{_LD}){_LDH}{{0,58}}{_LD})?"
HOSTNAME = f"{HOST_LABEL}(?:\\.{HOST_LABEL})*"
HOSTNAME_LENGTH = "[!-~]{1,253}"

# --- e-mail (RFC 5321 4.1.2 Mailbox; RFC 6531 for idn-email) --------------------------------

_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~\\-"
_QTEXT = " !#-\\[\\]-~"  # %d32-33 / %d35-91 / %d93-126
_SNUM = "(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"  # 1*3DIGIT, value 0-255
_IPV4_LITERAL = f"{_SNUM}(?:\\.{_SNUM}){{3}}"
_IPV6_5321 = _ipv6(_H16, _IPV4_LITERAL, min_elided=2)
_SUB_DOMAIN = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = f"{_SUB_DOMAIN}(?:\\.{_SUB_DOMAIN})*"
_ADDRESS_LITERAL = f"\\[(?:{_IPV4_LITERAL}|IPv6:{_IPV6_5321})\\]"  # no other tag is registered


def _mailbox(extra: str) -> str:
    atext = f"[{_ATEXT}{extra}]"
    qcontent = f"(?:[{_QTEXT}{extra}]|\\\\[ -~])"
    local = f"(?:{atext}+(?:\\.{atext}+)*|\"{qcontent}*\")"
    return f"{local}@(?:{_DOMAIN}|{_ADDRESS_LITERAL})"


EMAIL = _mailbox("")
# UTF8-non-ascii joins atext and qtext; U-labels in the domain are not generated (SUBSET).
IDN_EMAIL = _mailbox("\\x80-\\ud7ff\\ue000-\\U0010ffff")

# --- URIs (RFC 3986) and IRIs (RFC 3987) ----------------------------------------------------

_PCT = "%[0-9A-Fa-f]{2}"
_UNRESERVED = "A-Za-z0-9\\-._~"
_SUB_DELIMS = "!$&'()*+,;="
_UCSCHAR = (
    "\\xa0-\\ud7ff\\uf900-\\ufdcf\\ufdf0-\\uffef"
    "\\U00010000-\\U0001fffd\\U00020000-\\U0002fffd\\U00030000-\\U0003fffd\\U00040000-\\U0004fffd"
    "\\U00050000-\\U0005fffd\\U00060000-\\U0006fffd\\U00070000-\\U0007fffd\\U00080000-\\U0008fffd"
    "\\U00090000-\\U0009fffd\\U000a0000-\\U000afffd\\U000b0000-\\U000bfffd\\U000c0000-\\U000cfffd"
    "\\U000d0000-\\U000dfffd\\U000e1000-\\U000efffd"
)
_IPRIVATE = "\\ue000-\\uf8ff\\U000f0000-\\U000ffffd\\U00100000-\\U0010fffd"
_IPV_FUTURE = f"[Vv][0-9A-Fa-f]+\\.[{_UNRESERVED}{_SUB_DELIMS}:]+"
_IP_LITERAL = f"\\[(?:{IPV6}|{_IPV_FUTURE})\\]"


def _uri_grammar(iri: bool) -> tuple[str, str]:
    """(absolute URI/IRI, URI/IRI reference) per RFC 3986 section 3 / 4.1, RFC 3987 2.2."""
    unreserved = _UNRESERVED + (_UCSCHAR if iri else "")
    pchar = f"(?:[{unreserved}{_SUB_DELIMS}:@]|{_PCT})"
    segment = f"{pchar}*"
    segment_nz = f"{pchar}+"
    segment_nz_nc = f"(?:[{unreserved}{_SUB_DELIMS}@]|{_PCT})+"
    query_extra = _IPRIVATE if iri else ""
    query = f"(?:[{unreserved}{_SUB_DELIMS}:@/?{query_extra}]|{_PCT})*"
    fragment = f"(?:[{unreserved}{_SUB_DELIMS}:@/?]|{_PCT})*"
    scheme = "[A-Za-z][A-Za-z0-9+\\-.]*"
    userinfo = f"(?:[{unreserved}{_SUB_DELIMS}:]|{_PCT})*"
    reg_name = f"(?:[{unreserved}{_SUB_DELIMS}]|{_PCT})*"
    host = f"(?:{_IP_LITERAL}|{IPV4}|{reg_name})"
    authority = f"(?:{userinfo}@)?{host}(?::[0-9]*)?"
    path_abempty = f"(?:/{segment})*"
    path_absolute = f"/(?:{segment_nz}(?:/{segment})*)?"
    path_rootless = f"{segment_nz}(?:/{segment})*"
    path_noscheme = f"{segment_nz_nc}(?:/{segment})*"
    tail = f"(?:\\?{query})?(?:#{fragment})?"
    hier = f"(?://{authority}{path_abempty}|{path_absolute}|{path_rootless}|)"
    absolute = f"{scheme}:{hier}{tail}"
    relative = f"(?://{authority}{path_abempty}|{path_absolute}|{path_noscheme}|){tail}"
    return absolute, f"(?:{absolute}|{relative})"


URI, URI_REFERENCE = _uri_grammar(iri=False)
IRI, IRI_REFERENCE = _uri_grammar(iri=True)

# RFC 6570 level 4 (the reserved operators "=,!@|" are left out: processors must reject them).
_VARCHAR = f"(?:[A-Za-z0-9_]|{_PCT})"
_VARSPEC = f"{_VARCHAR}(?:\\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\\*)?"
_EXPRESSION = f"\\{{[+#./;?&]?{_VARSPEC}(?:,{_VARSPEC})*\\}}"
# literals: %x21 / %x23-24 / %x26-3B (with the apostrophe, erratum 6937) / %x3D / %x3F-5B / ...
_LITERAL = f"(?:[!#$&-;=?-\\[\\]_a-z~{_UCSCHAR}{_IPRIVATE}]|{_PCT})"
URI_TEMPLATE = f"(?:{_LITERAL}|{_EXPRESSION})*"

# --- JSON pointers (RFC 6901, draft-handrews-relative-json-pointer-01) ----------------------

JSON_POINTER = "(?:/(?:[^~/]|~[01])*)*"
# Index manipulation ("0+1/x", 2020-12's relative pointer draft) is not generated (SUBSET).
RELATIVE_JSON_POINTER = f"(?:0|[1-9][0-9]*)(?:#|{JSON_POINTER})"

UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"

# --- contentEncoding (RFC 4648 section 4, with padding) -------------------------------------

_B64 = "[A-Za-z0-9+/]"
BASE64 = f"(?:{_B64}{{4}})*(?:{_B64}{{2}}==|{_B64}{{3}}=)?"

EXACT: dict[str, list[str]] = {
    "date": [FULL_DATE],
    "time": FULL_TIME,
    "date-time": DATE_TIME,
    "duration": [DURATION],
    "email": [EMAIL],
    "ipv4": [IPV4],
    "ipv6": [IPV6],
    "uri": [URI],
    "uri-reference": [URI_REFERENCE],
    "iri": [IRI],
    "iri-reference": [IRI_REFERENCE],
    "uri-template": [URI_TEMPLATE],
    "json-pointer": [JSON_POINTER],
    "uuid": [UUID],
}
SUBSET: dict[str, list[str]] = {
    "hostname": [HOSTNAME, HOSTNAME_LENGTH],
    "idn-hostname": [HOSTNAME, HOSTNAME_LENGTH],
    "idn-email": [IDN_EMAIL],
    "relative-json-pointer": [RELATIVE_JSON_POINTER],
}
# Known formats with no regular form: asserting them exactly is impossible.
UNSUPPORTED: dict[str, str] = {
    "regex": "whether a string is a valid regex is not a regular language",
}


def format_regexes(name: str) -> list[str] | None:
    """The regexes (all must full-match) for a known format; None for an unknown one."""
    return EXACT.get(name) or SUBSET.get(name)
