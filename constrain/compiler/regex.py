"""A user's regex (Python ``re`` syntax and meaning) -> the engine's (Rust regex) dialect.

Outputs are checked with Python's ``re.fullmatch``, so every translation generates a
subset of what Python accepts: ``\\d``, ``\\w``, ``\\s`` become their ASCII classes (the
engine's Unicode ``\\d`` lets a model write '๓' for '3'); the negated classes exclude
exactly what Python's do.
"""

from __future__ import annotations

_PY_SPACE = r"\s\x1c-\x1f"  # Python's \s is Rust's Unicode \s plus the four separators
_OUTSIDE = {
    "d": "[0-9]",
    "w": "[0-9A-Za-z_]",
    "s": r"[ \t\n\r\f\v]",
    "D": r"\D",
    "W": r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]",
    "S": f"[^{_PY_SPACE}]",
}
_INSIDE = {
    "d": "0-9",
    "w": "0-9A-Za-z_",
    "s": r" \t\n\r\f\v",
    "D": r"\D",
    "W": r"\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f",
    "S": f"[^{_PY_SPACE}]",
}


def to_engine_regex(pattern: str) -> str:
    """Rewrite shorthand classes; everything else passes through unchanged."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            table = _INSIDE if in_class else _OUTSIDE
            out.append(table.get(nxt, ch + nxt))
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            # A ']' right after '[' or '[^' is a literal member.
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                out.append(r"\]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)
