"""load_grammar(name): the one reader of the shipped ``grammars/`` folder."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent
# A wheel carries the folder inside the package; a checkout keeps it at the top level.
_SEARCH = (_PACKAGE / "_grammars", _PACKAGE.parent / "grammars")


def grammar_dir() -> Path:
    for folder in _SEARCH:
        if folder.is_dir():
            return folder
    raise FileNotFoundError("constrain's grammars/ folder is missing from this installation")


def shipped_grammars() -> list[str]:
    return sorted(p.stem for p in grammar_dir().glob("*.lark"))


@cache
def load_grammar(name: str) -> str:
    """Text of a shipped Lark grammar, by name (``"tool_calls"`` or ``"tool_calls.lark"``)."""
    stem = name[:-5] if name.endswith(".lark") else name
    path = grammar_dir() / f"{stem}.lark"
    if not path.is_file():
        raise KeyError(f"no shipped grammar named {stem!r}; shipped: {', '.join(shipped_grammars())}")
    return path.read_text(encoding="utf-8")
