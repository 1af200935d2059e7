"""Engines turn grammar text into token masks. The only importers of mask libraries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from constrain.engines.base import (
    PRETTY_WHITESPACE,
    CompiledGrammar,
    EmptyGrammar,
    Engine,
    EngineGrammar,
    EngineName,
    GrammarKind,
    JsonOptions,
    Matcher,
)
from constrain.errors import InvalidRequestError


def _llguidance(tokenizer: Any, vocab_size: int | None) -> Engine:
    from constrain.engines.llguidance import LLGuidanceEngine

    return LLGuidanceEngine(tokenizer, vocab_size=vocab_size)


def _outlines_core(tokenizer: Any, vocab_size: int | None) -> Engine:
    try:
        from constrain.engines.outlines_core import OutlinesCoreEngine
    except ImportError:
        raise InvalidRequestError(
            "engine 'outlines_core' needs the optional dependency: pip install 'constrain[outlines-core]'",
            param="engine",
        ) from None
    return OutlinesCoreEngine(tokenizer, vocab_size=vocab_size)


ENGINES: dict[str, Callable[[Any, int | None], Engine]] = {
    "llguidance": _llguidance,
    "outlines_core": _outlines_core,
}


def create_engine(name: str, tokenizer: Any, vocab_size: int | None = None) -> Engine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise InvalidRequestError(
            f"`engine` must be one of {', '.join(ENGINES)}; got {name!r}", param="engine"
        ) from None
    return factory(tokenizer, vocab_size)


__all__ = [
    "ENGINES",
    "PRETTY_WHITESPACE",
    "CompiledGrammar",
    "EmptyGrammar",
    "Engine",
    "EngineGrammar",
    "EngineName",
    "GrammarKind",
    "JsonOptions",
    "Matcher",
    "create_engine",
]
