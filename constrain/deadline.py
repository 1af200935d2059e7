"""The compile deadline: how long compiling one request's constraints may take, and how many
compiles may run at once.

A deadline is set around a request's compile (``compile_deadline``) and checked by the
compiler's loops (``check_deadline``): a schema that slips past the static limits
(``schema/limits.py``) still ends in a CompileTimeoutError instead of holding a thread for
minutes. The engine's own work is bounded by its fuel limits. ``CompileSlots`` caps the
compiles running together, so that abandoned hostile ones cannot take the CPU (and the GIL)
from the decoding core and from ordinary requests, whose constraints are cached.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from constrain.errors import CompileTimeoutError, OverloadedError

DEFAULT_COMPILE_TIMEOUT_S = 2.0
T = TypeVar("T")


@dataclass(frozen=True)
class _Deadline:
    end: float
    seconds: float
    slots: CompileSlots | None


_current: ContextVar[_Deadline | None] = ContextVar("constrain_compile_deadline", default=None)


class CompileSlots:
    """At most ``size`` compiles at once; a compile waits for a slot until its deadline."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"compile slots must be a whole number >= 1, got {size!r}")
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        if not self._semaphore.acquire(timeout=None if timeout == float("inf") else max(timeout, 0.0)):
            raise OverloadedError(
                f"the server is compiling {self.size} other constraints; retry in a moment", code="compile_busy"
            )
        try:
            yield
        finally:
            self._semaphore.release()


@contextlib.contextmanager
def compile_deadline(seconds: float | None, slots: CompileSlots | None = None) -> Iterator[None]:
    """Compiles inside this block end by ``seconds`` from now (None: no deadline; an outer,
    earlier deadline still holds) and take one of ``slots`` while they run."""
    outer = _current.get()
    if seconds is None and slots is None:
        yield
        return
    limit = float("inf") if seconds is None else seconds
    end = time.monotonic() + limit
    if outer is not None and outer.end <= end:
        end, limit = outer.end, outer.seconds
    token = _current.set(_Deadline(end, limit, slots or (outer.slots if outer else None)))
    try:
        yield
    finally:
        _current.reset(token)


def run_bounded(compile: Callable[[], T]) -> T:
    """Run one compile that missed the cache, returning by the current deadline at the latest.

    Without a deadline it runs here. With one it runs on a thread of its own, which takes one
    of the deadline's slots (if any) for as long as it really runs: a compile abandoned at its
    deadline (the engine's part cannot be interrupted) still counts against the cap until it
    ends, so abandoned compiles cannot pile up.
    """
    deadline = _current.get()
    if deadline is None:
        return compile()
    outcome: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            slots = deadline.slots
            with slots.held(deadline.end - time.monotonic()) if slots else contextlib.nullcontext():
                check_deadline()
                outcome["value"] = compile()
        except BaseException as exc:  # handed to the caller, if it still waits
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=context.run, args=(work,), name="constrain-compile", daemon=True).start()
    left = deadline.end - time.monotonic()
    if not done.wait(None if left == float("inf") else max(left, 0.0) + 0.05):
        raise _timeout(deadline)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def _timeout(deadline: _Deadline) -> CompileTimeoutError:
    return CompileTimeoutError(
        f"compiling the constraint took longer than {deadline.seconds:g} s (the compile deadline); "
        "simplify the schema, regex or grammar",
        seconds=deadline.seconds,
    )


def check_deadline() -> None:
    """Raise CompileTimeoutError once the current compile deadline has passed."""
    deadline = _current.get()
    if deadline is not None and time.monotonic() > deadline.end:
        raise _timeout(deadline)
