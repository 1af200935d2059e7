"""In-memory LRU cache of finished answers to deterministic requests (``x-use-cache``).

Only requests whose answer cannot change between runs are cached: greedy (``temperature: 0``)
or seeded. The key is the canonical JSON of the validated request, so that spelling
differences that mean the same thing (``stop: "x"`` vs ``["x"]``, key order, defaults)
share an entry.
"""

from __future__ import annotations

import hashlib
import json

from constrain.lru import LRUCache
from constrain.types import ChatCompletionRequest

__all__ = ["LRUCache", "cache_key", "is_deterministic"]


def is_deterministic(request: ChatCompletionRequest) -> bool:
    """Greedy or seeded: the same request gives the same answer."""
    return request.temperature == 0 or request.seed is not None


def cache_key(request: ChatCompletionRequest) -> str:
    """A digest of the canonical request (validated, defaults filled, keys sorted)."""
    data = request.model_dump(mode="json", exclude_none=True, by_alias=True)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
