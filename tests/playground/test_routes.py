"""The Playground's routes without a browser or a model: what is served, to whom, with which headers."""

from __future__ import annotations

import logging
import re

import pytest
from starlette.testclient import TestClient

import constrain.server
from constrain.cli import build_parser
from constrain.compiler.grammars import shipped_grammars
from constrain.server import create_app
from constrain.server.playground import STATIC, url


def _never_loads() -> None:
    raise AssertionError("the page must not need the model")


def client(**options: object) -> TestClient:
    # No `with`: the lifespan (the model's background load) never starts.
    return TestClient(create_app(_never_loads, **options))  # type: ignore[arg-type]


def test_page_and_assets_are_open_even_with_keys() -> None:
    c = client(api_keys=["k"])
    page = c.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = c.get(f"/playground/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert response.headers["content-security-policy"] == policy
    assert c.get("/v1/models").status_code == 401  # the API still needs the key


def test_grammars_are_listed() -> None:
    grammars = client().get("/playground/grammars.json").json()
    assert sorted(grammars) == shipped_grammars()
    assert all(text.strip() for text in grammars.values())


def test_missing_asset_is_a_json_404() -> None:
    response = client().get("/playground/nothing.js")
    assert response.status_code == 404 and response.json()["error"]


def test_no_third_party_or_remote_assets() -> None:
    """Offline by construction: every URL in the page's files is this origin's."""
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path.name
        assert not re.search(r"""(import|fetch)\(?\s*["']https?://""", text), path.name
        assert "@import" not in text and "cdn" not in text.lower(), path.name


def test_printed_url() -> None:
    assert url("127.0.0.1", 8080) == "http://127.0.0.1:8080/"
    assert url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert url("::1", 8000) == "http://[::1]:8000/"


def test_serve_prints_the_playground_url(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """`constrain serve` logs the page's address before it starts listening (nothing is loaded here)."""

    class NotRun:
        def run(self) -> None:
            pass

    monkeypatch.setattr(constrain.server, "draining_server", lambda config, drain: NotRun())
    args = build_parser().parse_args(["serve", "--port", "8123"])
    with caplog.at_level(logging.INFO, logger="constrain.server"):
        assert args.func(args) == 0
    assert "Playground: http://127.0.0.1:8123/" in caplog.text
