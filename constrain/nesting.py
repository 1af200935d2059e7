"""How deep JSON-like text is inside strings, arrays and objects, scanned as it grows.

Shared by the budget closer (how much is open) and the tool-call parser (where an arguments
object ends). Brackets inside strings and escaped quotes do not count.
"""

from __future__ import annotations


def string_char(ch: str, escaped: bool) -> tuple[bool, bool]:
    """One character inside a JSON string: (the string goes on, an escape is now pending)."""
    if escaped:
        return True, False
    if ch == "\\":
        return True, True
    return ch != '"', False


class Nesting:
    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.seen = 0

    def feed(self, chunk: str, *, stop_at_zero: bool = False) -> int | None:
        """Scan ``chunk``; with ``stop_at_zero``, stop after the bracket that closes depth 1
        and return the length of ``chunk`` scanned so far (None when that did not happen)."""
        for i, ch in enumerate(chunk):
            if self.in_string:
                self.in_string, self.escaped = string_char(ch, self.escaped)
            elif ch == '"':
                self.in_string = True
            elif ch in "[{":
                self.depth += 1
            elif ch in "]}" and self.depth:
                self.depth -= 1
                if stop_at_zero and self.depth == 0:
                    return i + 1
        return None

    def update(self, text: str) -> None:
        """Scan what ``text`` (the whole output so far) added since the last call."""
        self.feed(text[self.seen :])
        self.seen = len(text)

    @property
    def open(self) -> int:
        return self.depth + int(self.in_string)
