"""The Playground: a web page at ``/`` for trying requests, served from the package itself.

Plain files in ``static/playground/`` (no build step, no CDN: it works offline), on the API's
own origin so that no CORS is needed. The page itself is open; the API calls it makes need a
key when the server has keys (the page asks for one after a 401). A strict Content-Security-
Policy keeps every script, style and connection on this origin.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from constrain.compiler.grammars import load_grammar, shipped_grammars

STATIC = Path(__file__).resolve().parent / "static" / "playground"
PATH = "/"  # where ``constrain serve`` says the page is

# Images attached to messages are data URLs; everything else comes from this origin.
POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
          "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"content-security-policy": POLICY, "x-content-type-options": "nosniff", "cache-control": "no-cache"}


class _Assets(StaticFiles):
    """The page's files, with the same security headers as the page."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update(HEADERS)
        return response


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


async def grammars(request: Request) -> JSONResponse:
    """The shipped Lark grammars by name: the page's grammar picker (public files, no key needed)."""
    return JSONResponse({name: load_grammar(name) for name in shipped_grammars()}, headers=HEADERS)


def routes() -> list[BaseRoute]:
    """``/`` (the page), ``/playground/grammars.json`` and the assets under ``/playground/``."""
    return [
        Route(PATH, page, methods=["GET"]),
        Route("/playground/grammars.json", grammars, methods=["GET"]),
        Mount("/playground", app=_Assets(directory=STATIC), name="playground"),
    ]


def url(host: str, port: int) -> str:
    """The Playground's address as ``constrain serve`` prints it."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}{PATH}"
