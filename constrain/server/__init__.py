"""HTTP server (``constrain serve``). Placeholder until the server lands."""

from __future__ import annotations

from typing import Any


def serve(args: Any) -> int:
    raise SystemExit("constrain serve is not implemented yet")
