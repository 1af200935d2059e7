"""Real uvicorn servers on 127.0.0.1, in threads, serving the session's embedded model."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from constrain.server import create_app
from constrain.server.app import ServerState


class ServerThread:
    """A uvicorn server for ``app`` on a free port of 127.0.0.1, run in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # log_config=None: uvicorn's loggers propagate, so caplog sees what a server would log.
        config = uvicorn.Config(app, log_config=None, log_level="info", lifespan="on", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def state(self) -> ServerState:
        return self.app.state.constrain  # type: ignore[no-any-return]

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Block until no generation runs or waits (a bound for a hung server, not a timing check)."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.state.holder.model.core.snapshot()
            if snap["running"] == 0 and snap["waiting"] == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"server still busy after {timeout} s: {snap}")
            time.sleep(0.05)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``predicate``; the timeout only bounds a hung test."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """Factory: ``start_server(model_or_factory, **create_app_options)``; all stopped at the end."""
    started: list[ServerThread] = []

    def start(model: Any, **options: Any) -> ServerThread:
        server = ServerThread(create_app(model, **options)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(model, start_server) -> ServerThread:
    """An open server (no keys, default limits) for the embedded model."""
    return start_server(model)
