"""The models a server serves, by name, each with its own loader and its own batch.

A request's ``model`` picks one. With a single model, any name (or none) reaches it, so that
snippets written for another server (``"tgi"``, ``"gpt-4o"``) run unchanged; with several, a
missing ``model`` means the first one listed and an unknown name is a 404 ``model_not_found``
that lists what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from constrain.errors import InvalidRequestError, ModelNotFoundError
from constrain.model import Model
from constrain.server.loader import DEFAULT_LOAD_ESTIMATE_S, ModelHolder

ModelSource = Model | Callable[[], Model]


class ModelRegistry:
    """Served name -> ModelHolder, in the order given; the first is the default."""

    def __init__(self, sources: Mapping[str, ModelSource], *, load_estimate_s: float = DEFAULT_LOAD_ESTIMATE_S,
                 load_at_start: bool = True) -> None:
        if not sources:
            raise InvalidRequestError("a server needs at least one model", param="model")
        self.holders = {name: ModelHolder(source, load_estimate_s=load_estimate_s) for name, source in sources.items()}
        self.load_at_start = load_at_start

    @property
    def default(self) -> ModelHolder:
        return next(iter(self.holders.values()))

    def __iter__(self) -> Iterator[tuple[str, ModelHolder]]:
        return iter(self.holders.items())

    def __len__(self) -> int:
        return len(self.holders)

    def start(self) -> None:
        """At app start: begin loading every model, unless they load on first use."""
        if self.load_at_start:
            for holder in self.holders.values():
                holder.start()

    def pick(self, name: Any) -> ModelHolder:
        """The holder for a request's ``model`` field (see the module docstring)."""
        if name is not None and not isinstance(name, str):
            raise InvalidRequestError(f"`model` must be a string, got {type(name).__name__}", param="model")
        if len(self.holders) == 1 or not name:
            return self.default
        holder = self.holders.get(name)
        if holder is None:
            served = ", ".join(self.holders)
            raise ModelNotFoundError(f"the model {name[:100]!r} is not served here; served: {served}")
        return holder

    def card(self, name: str, holder: ModelHolder) -> dict[str, Any]:
        """One ``/v1/models`` entry: OpenAI's fields, then what the model can do (our extension)."""
        card: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "constrain",
                                "status": holder.state}
        model = holder.model
        if model is not None:
            card.update(model.capabilities())
        return card
