"""A tiny vision-language model built in code, and an image server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.images.tiny_vlm import build_tiny_vlm
from tests.server.conftest import start_server  # noqa: F401 - the server fixture, for the HTTP tests here


def png(colour: tuple[int, int, int] = (200, 20, 20), size: tuple[int, int] = (48, 40)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def bomb() -> bytes:
    """A PNG of 10,000 x 10,000 pixels in a few kilobytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")
    return buffer.getvalue()


class ImageServer:
    """Serves test images, redirects and failures on 127.0.0.1."""

    def __init__(self) -> None:
        red, blue = png(), png((20, 20, 200))
        routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/red.png": (200, {"content-type": "image/png"}, red),
            "/blue.png": (200, {"content-type": "image/png"}, blue),
            "/text": (200, {"content-type": "text/plain"}, b"not an image at all"),
            "/truncated.png": (200, {"content-type": "image/png"}, red[: len(red) // 2]),
            "/bomb.png": (200, {"content-type": "image/png"}, bomb()),
            "/large.png": (200, {"content-type": "image/png"}, red + b"\0" * 3_000_000),
            "/missing.png": (404, {}, b"no"),
        }
        self.hits: list[str] = []

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.hits.append(self.path)
                if self.path == "/slow.png":
                    time.sleep(3)
                if self.path.startswith("/redirect"):
                    target = self.path.split("to=", 1)[1]
                    self.send_response(302)
                    self.send_header("location", target)
                    self.end_headers()
                    return
                status, headers, body = routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture(scope="session")
def vlm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny-vlm")


@pytest.fixture(scope="session")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "red.png").write_bytes(png())
    (root / "green.png").write_bytes(png((20, 200, 20)))
    return root


@pytest.fixture(scope="session")
def vlm(vlm_folder: Path, media_root: Path):
    """The tiny VLM with a policy that lets the tests' own loopback server and media folder in."""
    import constrain
    from constrain.images import ImagePolicy

    policy = ImagePolicy(fetch_domains=("127.0.0.1",), allow_private=True, local_root=media_root,
                         max_bytes=2_000_000, timeout_s=1.0)
    return constrain.load(str(vlm_folder), image_policy=policy)
