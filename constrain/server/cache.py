"""The key of the answer cache (``x-use-cache``, a ``constrain.lru.LRUCache`` the server owns).

Only requests whose answer cannot change between runs are cached: greedy (``temperature: 0``)
or seeded. The key is the canonical JSON of the validated request, so that spelling
differences that mean the same thing (``stop: "x"`` vs ``["x"]``, key order, defaults)
share an entry.
"""

from __future__ import annotations

import hashlib
import json

from constrain.types import ChatCompletionRequest


def is_deterministic(request: ChatCompletionRequest) -> bool:
    """Greedy or seeded: the same request gives the same answer."""
    return request.temperature == 0 or request.seed is not None


def cache_key(request: ChatCompletionRequest) -> str:
    """A digest of the canonical request (validated, defaults filled, keys sorted)."""
    data = request.model_dump(mode="json", exclude_none=True, by_alias=True)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
