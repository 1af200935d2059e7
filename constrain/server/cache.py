"""In-memory LRU cache of finished answers to deterministic requests (``x-use-cache``).

Only requests whose answer cannot change between runs are cached: greedy (``temperature: 0``)
or seeded. The key is the canonical JSON of the validated request, so that spelling
differences that mean the same thing (``stop: "x"`` vs ``["x"]``, key order, defaults)
share an entry.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from constrain.types import ChatCompletionRequest

V = TypeVar("V")


def is_deterministic(request: ChatCompletionRequest) -> bool:
    """Greedy or seeded: the same request gives the same answer."""
    return request.temperature == 0 or request.seed is not None


def cache_key(request: ChatCompletionRequest) -> str:
    """A digest of the canonical request (validated, defaults filled, keys sorted)."""
    data = request.model_dump(mode="json", exclude_none=True, by_alias=True)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LRUCache(Generic[V]):
    """A bounded mapping that forgets the least recently used entry first; thread-safe."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: V) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
