"""pytest plugin: a real model and a real OpenAI-compatible endpoint, offline, for the test session.

Loaded by the ``pytest11`` entry point whenever constrain is installed; ``-p no:constrain``
turns it off. Nothing heavy is imported until a fixture is used: the model loads (1-20 s) the
first time a test asks for ``constrain_model`` or anything built on it.

Fixtures (session scope):

- ``constrain_model``: the embedded SmolLM2-135M-Instruct, or ``--constrain-model PATH`` /
  the ini setting ``constrain_model`` (a local HF folder or ``.gguf``).
- ``constrain_server``: ``constrain serve``'s app on 127.0.0.1 (a free port, in a thread),
  serving that model; ``.base_url`` (``http://127.0.0.1:PORT/v1``), ``.url`` (without ``/v1``)
  and ``.api_key`` (a random key the server requires).
- ``openai_client``: an ``openai.OpenAI`` pointed at it; ``inference_client``: a
  ``huggingface_hub.InferenceClient`` pointed at it.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from constrain.model import Model

_START_TIMEOUT_S = 120.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("constrain", "constrain: local constrained model and endpoint")
    group.addoption("--constrain-model", dest="constrain_model", default=None, metavar="PATH",
                    help="model for the constrain_* fixtures: a local HF folder or .gguf (default: the embedded one)")
    parser.addini("constrain_model", "model for the constrain_* fixtures (a local HF folder or .gguf)", default="")


@dataclass
class ConstrainServer:
    """A ``constrain serve`` app on 127.0.0.1 in a daemon thread (uvicorn), for one test session."""

    model: Any
    api_key: str = field(default_factory=lambda: "sk-test-" + secrets.token_hex(8))
    host: str = "127.0.0.1"
    port: int = 0
    _server: Any = None
    _thread: threading.Thread | None = None
    _socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """The server's root (``huggingface_hub.InferenceClient(base_url=...)`` takes this)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``openai.OpenAI(base_url=...)``, ``OPENAI_BASE_URL``)."""
        return self.url + "/v1"

    def start(self) -> ConstrainServer:
        import uvicorn

        from constrain.server import create_app

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        app = create_app(self.model, api_keys=[self.api_key])
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="constrain-server")
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the constrain server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def env(self) -> dict[str, str]:
        """Environment variables that point the ``openai`` SDK (and apps reading them) at this server."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key}


def _model_option(config: pytest.Config) -> str | None:
    value = config.getoption("constrain_model") or config.getini("constrain_model")
    return str(value) if value else None


@pytest.fixture(scope="session")
def constrain_model(pytestconfig: pytest.Config) -> Iterator[Model]:
    """The model the constrain fixtures serve: embedded, or ``--constrain-model`` / ini ``constrain_model``."""
    import constrain

    model = constrain.load(_model_option(pytestconfig))
    yield model
    model.close()  # its decoding thread


@pytest.fixture(scope="session")
def constrain_server(constrain_model: Model) -> Iterator[ConstrainServer]:
    """An OpenAI-compatible endpoint on 127.0.0.1 serving ``constrain_model``, for the session."""
    server = ConstrainServer(constrain_model).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_client(constrain_server: ConstrainServer) -> Any:
    """``openai.OpenAI`` pointed at ``constrain_server`` (skips when ``openai`` is not installed)."""
    openai = pytest.importorskip("openai", reason="openai_client needs `pip install openai`")
    return openai.OpenAI(base_url=constrain_server.base_url, api_key=constrain_server.api_key, max_retries=0)


@pytest.fixture(scope="session")
def inference_client(constrain_server: ConstrainServer) -> Any:
    """``huggingface_hub.InferenceClient`` pointed at ``constrain_server`` (skips without ``huggingface_hub``)."""
    hub = pytest.importorskip("huggingface_hub", reason="inference_client needs `pip install huggingface_hub`")
    return hub.InferenceClient(base_url=constrain_server.url, api_key=constrain_server.api_key)
