"""A real headless Chromium (Debian's, driven by Playwright) against real servers on 127.0.0.1.

Playwright's own browser download cannot work offline, so the browser is the system's
``chromium`` (``CONSTRAIN_CHROMIUM`` overrides the path); the tests skip where it or the
``playwright`` package is missing. Every request the page makes must stay on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from constrain.server import create_app
from tests.server.conftest import ServerThread

API_KEY = "playground-test-key-7f3a9c"
# Quiet and local: no update checks, sync, crash reports or field trials.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--no-first-run", "--disable-breakpad",
                 "--disable-field-trial-config", "--disable-domain-reliability", "--metrics-recording-only"]


def chromium_path() -> str | None:
    return os.environ.get("CONSTRAIN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extras)")
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium binary (apt-get install chromium; scripts/test.sh does it)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(model: Any) -> Iterator[ServerThread]:
    """An open server for the session's model (its own cache: answers here are fresh)."""
    thread = ServerThread(create_app(model)).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def keyed_server(model: Any) -> Iterator[ServerThread]:
    thread = ServerThread(create_app(model, api_keys=[API_KEY])).start()
    yield thread
    thread.stop()


class Session:
    """A fresh browser context (its own storage) and page; records every URL the page requests."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000})
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request))
        self.page = self.new_page()

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.set_default_timeout(90_000)  # a generation on a loaded 2-core machine; a bound, not a goal
        return page

    def open(self, page: Any = None, path: str = "/") -> Any:
        page = page or self.page
        page.goto(self.base_url + path)
        page.wait_for_selector("body[data-ready=true]", state="attached")
        return page

    def foreign_requests(self) -> list[str]:
        hosts = {"127.0.0.1"}
        return [r.url for r in self.requests if not r.url.startswith("data:") and urlparse(r.url).hostname not in hosts]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session(browser: Any, server: ServerThread) -> Iterator[Session]:
    s = Session(browser, server.base_url)
    yield s
    assert s.errors == [], f"JavaScript errors on the page: {s.errors}"
    assert s.foreign_requests() == [], "the page reached beyond 127.0.0.1"
    s.close()
