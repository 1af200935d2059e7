"""Image parts of messages -> decoded images, under a policy that keeps requests from reaching
places they should not.

constrain fetches and decodes images itself and hands the model's processor pixels, never a
URL: transformers' own loader would fetch any URL with no size limit. ``data:`` URLs always
work; ``http(s)`` fetching is off unless a policy allows domains (every hop's address checked:
private, loopback and link-local addresses are refused unless allowed too; a byte cap, a
timeout, a redirect limit); local files only under an allowed folder. Every refusal is a 400
naming the part (``messages.0.content.1``).
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from constrain.errors import InvalidRequestError
from constrain.types import ImagePart, Message

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # a larger image is refused as a possible decompression bomb
DEFAULT_MAX_IMAGES = 8


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may come from, and how large they may be.

    ``fetch_domains``: hosts whose ``http(s)`` images may be fetched (``"example.com"`` also
    allows its subdomains; ``"*"`` any host); empty: no fetching. ``allow_private``: also
    addresses that are private, loopback or link-local (off: a request must not reach the
    server's own network). ``local_root``: the folder local files may be read from (None: no
    local files).
    """

    fetch_domains: tuple[str, ...] = ()
    allow_private: bool = False
    local_root: Path | None = None
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = DEFAULT_MAX_IMAGES
    timeout_s: float = 10.0
    max_redirects: int = 3
    schemes: frozenset[str] = field(default=frozenset({"data", "http", "https", "file"}))

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(d == "*" or host == d or host.endswith("." + d) for d in self.fetch_domains)


def image_parts(messages: Iterable[Message]) -> list[tuple[str, ImagePart]]:
    """Every image part, in order, with its place (``messages.i.content.j``)."""
    found = []
    for i, message in enumerate(messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    found.append((f"messages.{i}.content.{j}", part))
    return found


def load_images(messages: list[Message], policy: ImagePolicy) -> list[Any]:
    """The messages' images as RGB ``PIL.Image``s, in order; a 400 naming the part for any refusal."""
    parts = image_parts(messages)
    if len(parts) > policy.max_images:
        raise InvalidRequestError(f"{len(parts)} images; at most {policy.max_images} are accepted per request",
                                  param=parts[policy.max_images][0])
    return [_decode(_read(part.image_url.url, policy, where), policy, where) for where, part in parts]


def _refuse(where: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"`{where}`: {why}", param=where)


def _read(url: str, policy: ImagePolicy, where: str) -> bytes:
    scheme = urlsplit(url).scheme.lower() if "://" in url or url.startswith("data:") else ""
    if scheme and scheme not in policy.schemes:
        raise _refuse(where, f"the scheme {scheme!r} is not accepted for images")
    if scheme == "data":
        return _read_data_url(url, policy, where)
    if scheme in ("http", "https"):
        return _fetch(url, policy, where)
    return _read_file(unquote(urlsplit(url).path) if scheme == "file" else url, policy, where)


def _read_data_url(url: str, policy: ImagePolicy, where: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.lower().endswith(";base64"):
        raise _refuse(where, "a data URL must be `data:image/...;base64,<data>`")
    if len(payload) > policy.max_bytes * 4 // 3 + 4:
        raise _refuse(where, f"the image is over {policy.max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(where, "the data URL's payload is not valid base64") from None


def _read_file(path_text: str, policy: ImagePolicy, where: str) -> bytes:
    if policy.local_root is None:
        raise _refuse(where, "local image files are not accepted here (--allowed-local-media-path)")
    root = policy.local_root.resolve()
    path = Path(path_text).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()  # symlinks followed, then checked
    if not path.is_relative_to(root):
        raise _refuse(where, f"local images must be under {root}")
    if not path.is_file():
        raise _refuse(where, f"no such image file: {path}")
    if path.stat().st_size > policy.max_bytes:
        raise _refuse(where, f"the image is over {policy.max_bytes} bytes")
    return path.read_bytes()


def _check_address(host: str, port: int, policy: ImagePolicy, where: str) -> None:
    """Every address the host resolves to must be public (or private ones allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        raise _refuse(where, f"the image host {host!r} cannot be resolved") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not policy.allow_private and not address.is_global:
            raise _refuse(where, f"the image host {host!r} is a private, loopback or link-local address "
                                 f"({address}); refused")


def _fetch(url: str, policy: ImagePolicy, where: str) -> bytes:
    import httpx

    if not policy.fetch_domains:
        raise _refuse(where, "fetching images by URL is off here (send a data URL, or start the server "
                             "with --allow-image-fetch DOMAINS)")
    with httpx.Client(timeout=policy.timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(policy.max_redirects + 1):
            parts = urlsplit(url)
            host = parts.hostname or ""
            if parts.scheme not in ("http", "https") or not host:
                raise _refuse(where, f"cannot fetch {url[:200]!r}")
            if not policy.allows_host(host):
                raise _refuse(where, f"the image host {host!r} is not in the allowed domains")
            _check_address(host, parts.port or (443 if parts.scheme == "https" else 80), policy, where)
            try:
                with client.stream("GET", url) as reply:
                    if reply.is_redirect:
                        url = urljoin(url, reply.headers.get("location", ""))
                        continue
                    if reply.status_code != 200:
                        raise _refuse(where, f"fetching the image gave HTTP {reply.status_code}")
                    return _read_capped(reply.iter_bytes(), policy, where)
            except httpx.HTTPError as exc:
                raise _refuse(where, f"fetching the image failed ({type(exc).__name__})") from None
    raise _refuse(where, f"more than {policy.max_redirects} redirects")


def _read_capped(chunks: Iterable[bytes], policy: ImagePolicy, where: str) -> bytes:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > policy.max_bytes:
            raise _refuse(where, f"the image is over {policy.max_bytes} bytes")
    return bytes(data)


def _decode(data: bytes, policy: ImagePolicy, where: str) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise _refuse(where, "reading images needs Pillow: pip install 'constrain[images]'") from None
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the pixel limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
        with probe:
            width, height = probe.size
            if width * height > policy.max_pixels:
                raise _refuse(where, f"the image is {width}x{height} pixels; at most {policy.max_pixels} are "
                                     "accepted (a decompression bomb?)")
            probe.load()
            return probe.convert("RGB")
    except InvalidRequestError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _refuse(where, f"not a readable image ({type(exc).__name__}: {str(exc)[:120]})") from None
