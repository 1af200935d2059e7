"""Bearer-key check for the ``authorization`` header.

Keys are compared in constant time (``hmac.compare_digest``) against every configured key,
so that timing reveals neither which key nearly matched nor how much of it. Keys are never
logged or echoed in errors.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from constrain.errors import AuthenticationError


class ApiKeys:
    """The accepted keys; with none, the server is open."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = [k.encode("utf-8") for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:  # never show the keys themselves
        return f"ApiKeys({len(self._keys)} key(s))"

    def check(self, authorization: str | None) -> None:
        """Raise AuthenticationError unless ``authorization`` is ``Bearer <a configured key>``."""
        if not self._keys:
            return
        if not authorization:
            raise AuthenticationError("missing `authorization` header; send `Authorization: Bearer <key>`")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the `authorization` header must be `Bearer <key>`")
        given = token.strip().encode("utf-8")
        matched = False
        for key in self._keys:  # no early exit: the same work whichever key matches
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise AuthenticationError("invalid API key")
