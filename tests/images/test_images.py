"""Images in messages, on a tiny vision-language model built in code: data URLs, http(s) URLs and
local files under the policy; constraints unchanged on the output; every bad image and every
refused address a 400 naming the part; the spec's VLM snippet over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from huggingface_hub import InferenceClient

from constrain.errors import InvalidRequestError
from constrain.images import ImagePolicy, load_images
from constrain.types import Message
from tests.images.conftest import data_url, png

SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 10}}, "required": ["colour"],
          "additionalProperties": False}


def _ask(*urls: str, text: str = "What colour is it?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def _valid(content: str) -> None:
    jsonschema.validate(json.loads(content), SCHEMA)


def test_a_vision_model_says_it_reads_images(vlm):
    caps = vlm.capabilities()
    assert caps["images"] is True and caps["chat_template"] is True


def test_a_data_url_with_a_json_schema(vlm):
    out = vlm.chat_completion(_ask(data_url(png())), response_format={"type": "json", "value": SCHEMA},
                              max_tokens=40, temperature=0)
    _valid(out.choices[0].message.content)
    text = vlm.chat_completion([{"role": "user", "content": "What colour is it?"}], max_tokens=2, temperature=0)
    assert out.usage.prompt_tokens == text.usage.prompt_tokens + 7  # the image's own tokens
    chunks = list(vlm.chat_completion(_ask(data_url(png())), response_format={"type": "json", "value": SCHEMA},
                                      max_tokens=40, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == out.choices[0].message.content


def test_the_image_reaches_the_model(vlm):
    """Two images, the same text: the first token's distribution differs (the pixels are used)."""
    first = []
    for colour in ((250, 0, 0), (0, 0, 250)):
        out = vlm.chat_completion(_ask(data_url(png(colour))), max_tokens=1, temperature=0, logprobs=True,
                                  top_logprobs=5)
        first.append([(t.token, round(t.logprob, 4)) for t in out.choices[0].logprobs.content[0].top_logprobs])
    assert first[0] != first[1]


def test_http_file_and_several_images(vlm, image_server, media_root):
    urls = (data_url(png()), f"{image_server.base}/red.png", str(media_root / "green.png"),
            f"file://{media_root / 'red.png'}", "green.png")  # the last: relative to the media folder
    out = vlm.chat_completion(_ask(*urls), response_format={"type": "json", "value": SCHEMA}, max_tokens=40,
                              temperature=0)
    _valid(out.choices[0].message.content)
    assert "/red.png" in image_server.hits
    one = vlm.chat_completion(_ask(urls[0]), max_tokens=1, temperature=0)
    assert out.usage.prompt_tokens == one.usage.prompt_tokens + 4 * 7


def test_an_image_with_tools(vlm):
    tools = [{"type": "function", "function": {"name": "report", "parameters": SCHEMA}}]
    out = vlm.chat_completion(_ask(data_url(png())), tools=tools, tool_choice="required", max_tokens=40,
                              temperature=0)
    call = out.choices[0].message.tool_calls[0]
    assert call.function.name == "report"
    _valid(call.function.arguments)


@pytest.mark.parametrize(("path", "why"), [
    ("/text", "not a readable image"),
    ("/truncated.png", "not a readable image"),
    ("/bomb.png", "decompression bomb"),
    ("/large.png", "over 2000000 bytes"),
    ("/missing.png", "HTTP 404"),
    ("/slow.png", "failed (ReadTimeout)"),
    ("/redirect?to=http://localhost:{port}/red.png", "'localhost' is not in the allowed domains"),
])
def test_bad_images_served_by_url_are_a_400_naming_the_part(vlm, image_server, path, why):
    url = image_server.base + path.format(port=image_server.base.rsplit(":", 1)[1])
    with pytest.raises(InvalidRequestError) as info:
        vlm.chat_completion(_ask(data_url(png()), url), max_tokens=2)
    assert info.value.param == "messages.0.content.1"
    assert why in info.value.message


@pytest.mark.parametrize(("url", "why"), [
    ("data:image/png;base64,@@@", "not valid base64"),
    ("data:image/png,rawbytes", "data:image/...;base64"),
    ("ftp://127.0.0.1/red.png", "scheme 'ftp'"),
    ("/etc/passwd", "must be under"),
    ("file:///etc/hostname", "must be under"),
    ("../outside.png", "must be under"),
    ("nowhere.png", "no such image file"),
])
def test_bad_image_sources_are_a_400_naming_the_part(vlm, url, why):
    with pytest.raises(InvalidRequestError) as info:
        vlm.chat_completion(_ask(url), max_tokens=2)
    assert info.value.param == "messages.0.content.0"
    assert why in info.value.message


def test_too_many_images(vlm):
    with pytest.raises(InvalidRequestError) as info:
        vlm.chat_completion(_ask(*[data_url(png())] * 9), max_tokens=2)
    assert info.value.param == "messages.0.content.8" and "at most 8" in info.value.message


def _messages(url: str) -> list[Message]:
    return [Message.model_validate(m) for m in _ask(url)]


def test_the_default_policy_reads_data_urls_only(image_server, media_root):
    policy = ImagePolicy()
    assert len(load_images(_messages(data_url(png())), policy)) == 1
    for url, why in ((f"{image_server.base}/red.png", "fetching images by URL is off"),
                     (str(media_root / "red.png"), "local image files are not accepted")):
        with pytest.raises(InvalidRequestError, match=why):
            load_images(_messages(url), policy)
    before = list(image_server.hits)
    with pytest.raises(InvalidRequestError):
        load_images(_messages(f"{image_server.base}/blue.png"), policy)
    assert image_server.hits == before


def test_private_addresses_are_refused_even_for_an_allowed_domain(image_server, monkeypatch):
    """An allowed name that resolves to loopback (DNS rebinding's shape) is refused before any
    connection; loopback by address too, unless private addresses are allowed explicitly."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return real("127.0.0.1" if host == "images.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = image_server.base.rsplit(":", 1)[1]
    before = list(image_server.hits)
    for url, policy in ((f"http://images.example:{port}/red.png", ImagePolicy(fetch_domains=("example",))),
                        (f"{image_server.base}/red.png", ImagePolicy(fetch_domains=("127.0.0.1",))),
                        (f"http://[::1]:{port}/red.png", ImagePolicy(fetch_domains=("*",)))):
        with pytest.raises(InvalidRequestError, match="private, loopback or link-local"):
            load_images(_messages(url), policy)
    assert image_server.hits == before
    allowed = ImagePolicy(fetch_domains=("example",), allow_private=True)
    assert len(load_images(_messages(f"http://images.example:{port}/red.png"), allowed)) == 1


def test_a_text_model_refuses_image_parts_naming_the_part(model):
    with pytest.raises(InvalidRequestError) as info:
        model.chat_completion(_ask(data_url(png()), data_url(png())), max_tokens=2)
    assert info.value.param == "messages.0.content.0"


def test_the_spec_vlm_snippet_and_openai_over_http(vlm, vlm_folder, image_server, start_server):
    server = start_server({"tiny-vlm": vlm})
    client = InferenceClient(base_url=f"{server.base_url}/v1/")
    image_url = f"{image_server.base}/red.png"
    output = client.chat.completions.create(
        model="tiny-vlm",
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": "Describe this image in one sentence."},
        ]}],
        stream=True, max_tokens=12, temperature=0,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in output if chunk.choices)
    assert text
    oai = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    out = oai.chat.completions.create(model="tiny-vlm", messages=_ask(data_url(png())), max_tokens=40, temperature=0,
                                      response_format={"type": "json_schema",
                                                       "json_schema": {"name": "c", "schema": SCHEMA}})
    _valid(out.choices[0].message.content)
    card = httpx.get(f"{server.base_url}/v1/models").json()["data"][0]
    assert card["images"] is True
    bad = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=60,
                     json={"messages": _ask(f"{image_server.base}/text"), "max_tokens": 2})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages.0.content.0"


def test_a_server_loading_a_vlm_fetches_nothing_by_default(vlm_folder, image_server, start_server):
    server = start_server(str(vlm_folder))
    before = list(image_server.hits)
    reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=300, headers={"x-wait-for-model": "true"},
                       json={"messages": _ask(f"{image_server.base}/red.png"), "max_tokens": 2})
    assert reply.status_code == 400, reply.text
    assert "fetching images by URL is off" in reply.json()["error"]["message"]
    assert image_server.hits == before
    ok = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=300,
                    json={"messages": _ask(data_url(png())), "max_tokens": 2})
    assert ok.status_code == 200, ok.text


def test_cli_chat_with_an_image(vlm_folder, media_root: Path):
    script = Path(sys.executable).with_name("constrain")
    done = subprocess.run(
        [str(script), "chat", "What colour is it?", "--model", str(vlm_folder), "--image",
         str(media_root / "red.png"), "--json-schema", json.dumps(SCHEMA), "--max-tokens", "40",
         "--temperature", "0"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _valid(done.stdout.strip().splitlines()[-1])
