"""The served model, loaded in the background so that the server listens at once.

Until the model is ready, requests get 503 ``ModelNotReadyError`` with an ``estimated_time``
(seconds), or wait for it when they send ``x-wait-for-model: true``. A failed load is a
500 ``ModelLoadError`` for every request, with the cause in the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from constrain.errors import ConstrainError, ModelLoadError, ModelNotReadyError
from constrain.model import Model

log = logging.getLogger("constrain.server")

# A first guess at the load time before any load was timed; the embedded model loads in a few
# seconds from the on-disk cache, its first GGUF conversion takes longer.
DEFAULT_LOAD_ESTIMATE_S = 15.0


class ModelHolder:
    """Holds a Model, or the background task that is loading one."""

    def __init__(self, source: Model | Callable[[], Model], *, load_estimate_s: float = DEFAULT_LOAD_ESTIMATE_S):
        self._model: Model | None = source if isinstance(source, Model) else None
        self._factory = None if isinstance(source, Model) else source
        self._task: asyncio.Task[Model] | None = None
        self._error: ConstrainError | None = None
        self._started_at: float | None = None
        self.load_estimate_s = load_estimate_s
        self.load_seconds: float | None = None
        self.waiting = 0  # requests waiting for the load (x-wait-for-model: true)

    @property
    def model(self) -> Model | None:
        return self._model

    @property
    def state(self) -> str:
        """``ready``, ``loading``, ``error``, or ``not_loaded`` (a model loaded on first use)."""
        if self._model is not None:
            return "ready"
        if self._error is not None:
            return "error"
        return "loading" if self._task is not None else "not_loaded"

    def start(self) -> None:
        """Begin loading in a worker thread (idempotent); must run on the event loop."""
        if self._model is not None or self._task is not None or self._factory is None:
            return
        self._started_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._load(self._factory))
        # The error is kept in self._error; retrieve it so asyncio does not warn about it.
        self._task.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def _load(self, factory: Callable[[], Model]) -> Model:
        try:
            model = await asyncio.to_thread(factory)
        except ConstrainError as exc:
            self._error = exc
            raise
        except Exception as exc:
            log.exception("model failed to load")
            self._error = ModelLoadError(f"the model failed to load: {type(exc).__name__}: {exc}")
            raise self._error from exc
        self._model = model
        self.load_seconds = time.monotonic() - (self._started_at or time.monotonic())
        log.info("model %s ready after %.1f s", model.name, self.load_seconds)
        return model

    def estimated_time(self) -> float:
        """Seconds until the model is probably ready (a guess, never below 1)."""
        elapsed = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return round(max(1.0, self.load_estimate_s - elapsed), 1)

    def not_ready_error(self) -> ModelNotReadyError:
        return ModelNotReadyError(
            "the model is still loading; retry after `estimated_time` seconds, "
            "or send `x-wait-for-model: true` to wait",
            estimated_time=self.estimated_time(),
        )

    async def get(self, *, wait: bool) -> Model:
        """The model; raises 503 while loading unless ``wait``, and the load error if it failed."""
        if self._model is not None:
            return self._model
        if self._error is not None:
            raise self._error
        self.start()
        if not wait or self._task is None:
            raise self.not_ready_error()
        self.waiting += 1
        try:
            return await asyncio.shield(self._task)  # _load raises only ConstrainErrors
        finally:
            self.waiting -= 1
