"""Many sequences' masks in one call: the decoding core fills a whole batch's rows at once.

llguidance matchers are filled in parallel by its executor with the GIL released (its default
thread count is 80% of the cores, which is 1 on a 2-core machine: the count is set here);
matchers that keep runtime rules (``RulesMatcher``) get their llguidance part filled in the
same call and their rules applied after; other engines' matchers are filled one by one.
"""

from __future__ import annotations

import os
from typing import Any

import llguidance
import llguidance.numpy
import numpy as np

from constrain.engines.base import Matcher
from constrain.engines.llguidance import LLGuidanceMatcher
from constrain.engines.rules_matcher import RulesMatcher
from constrain.errors import GenerationError


class BatchFiller:
    """Fills ``bitmask[row]`` for each ``(matcher, row)``; owns its thread pool."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or os.cpu_count() or 1)
        self._executor: llguidance.LLExecutor | None = None

    def fill(self, rows: list[tuple[Matcher, int]], bitmask: np.ndarray) -> dict[int, Exception]:
        """Fill the rows; returns the rows whose matcher failed (their mask allows nothing), so
        that one sequence's failure ends that sequence only."""
        failed: dict[int, Exception] = {}
        native: list[tuple[llguidance.LLMatcher, int]] = []
        filled: list[tuple[LLGuidanceMatcher, int]] = []
        rules: list[tuple[RulesMatcher, int]] = []
        for matcher, row in rows:
            if isinstance(matcher, LLGuidanceMatcher):
                filled.append((matcher, row))
            elif isinstance(matcher, RulesMatcher) and isinstance(matcher.inner, LLGuidanceMatcher):
                filled.append((matcher.inner, row))
                rules.append((matcher, row))
            else:
                _guarded(matcher.fill_bitmask, bitmask, row, failed)
        native = [(matcher.native, row) for matcher, row in filled]
        if len(native) == 1:
            only, row = native[0]
            view = bitmask[row]
            only.unsafe_compute_mask_ptr(view.ctypes.data, view.nbytes)
        elif native:
            if self._executor is None:
                self._executor = llguidance.LLExecutor(num_threads=self.threads)
            llguidance.numpy.fill_next_token_bitmask_par(self._executor, native, bitmask)
        for wrapper, row in filled:  # a matcher that failed here (its engine's limit, mostly) says so
            error = wrapper.error()  # only by its state, and its mask then allows the end alone
            if error is not None:
                bitmask[row] = 0
                failed[row] = GenerationError(f"the engine failed while computing the next mask: {error}")
        for matcher, row in rules:
            _guarded(matcher.restrict, bitmask, row, failed)
        return failed


def _guarded(fill: Any, bitmask: np.ndarray, row: int, failed: dict[int, Exception]) -> None:
    try:
        fill(bitmask[row])
    except Exception as exc:
        bitmask[row] = 0
        failed[row] = exc
