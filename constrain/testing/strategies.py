"""A Hypothesis strategy for JSON Schemas: the example walker driven by Hypothesis' choices.

Each step of the walk draws a group (0: a token that only closes; then the walker's groups,
the simplest first) and an index in it, so Hypothesis' shrinking toward 0 closes strings,
arrays and objects as early as the schema allows: failing examples shrink toward small
instances. Walks longer than the sampler's ``max_tokens`` take only closing choices from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

    from constrain.testing.walker import ExampleSampler


@dataclass
class HypothesisChooser:
    """Takes each step's choice from Hypothesis (``draw``), so that choices shrink toward closing."""

    draw: DrawFn
    budget: int

    def choose(self, closers: np.ndarray, groups: list[np.ndarray], step: int, pressure: float,
               literal: bool) -> int:
        from hypothesis import strategies as st

        # Coin flips, which Hypothesis draws evenly and shrinks toward False: a schema literal (a
        # declared key, an enum value) where one may begin or go on; else close where one may
        # (False closes, so that shrinking ends values early); else one of the other groups.
        if literal:
            if self.draw(st.booleans()):
                return int(groups[0][self.draw(st.integers(0, groups[0].size - 1))])
            groups = groups[1:] or groups
        if closers.size and not self.draw(st.booleans()):
            return int(closers[self.draw(st.integers(0, closers.size - 1))])
        options = groups
        group = options[self.draw(st.integers(0, len(options) - 1))]
        return int(group[self.draw(st.integers(0, group.size - 1))])


def from_schema(schema: Any, *, sampler: ExampleSampler | None = None, max_tokens: int = 96) -> SearchStrategy[Any]:
    """A Hypothesis strategy of instances valid against ``schema``, shrinking toward small ones.

    Works for every schema :func:`constrain.compile_constraint` accepts (runtime rules
    included); every value is checked with ``jsonschema`` before a test sees it. The schema is
    compiled here, so an unsupported schema fails at once.

    Parameters
    ----------
    schema : dict | bool
    sampler : ExampleSampler, optional
        Default: the shared sampler over the embedded model's tokenizer.
    max_tokens : int, default: 96
        Tokens of free choice per value; after that the walk only closes.
    """
    from hypothesis import reject
    from hypothesis import strategies as st

    from constrain.testing.walker import default_sampler

    sampler = sampler or default_sampler()
    prepared = sampler.prepare(schema)

    @st.composite
    def values(draw: DrawFn) -> Any:
        ok, value = sampler.walk(prepared, HypothesisChooser(draw, max_tokens))
        if not ok:
            reject()
        return value

    return values()
