"""Screenshots of the Playground's main views, for the README (docs/playground/*.png).

Starts `constrain serve`'s app on a free port of 127.0.0.1 with the embedded model, drives
Debian's chromium with Playwright (as the browser tests do) and saves one PNG per view:

    .venv/bin/python scripts/screenshots.py            # -> docs/playground/
    .venv/bin/python scripts/screenshots.py --out DIR

Greedy decoding (temperature 0) makes the pictures the same from run to run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

ROOT = Path(__file__).resolve().parents[1]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                           "city": {"type": "string", "maxLength": 20}},
          "required": ["name", "age", "city"]}


def start_server() -> tuple[str, uvicorn.Server]:
    import constrain
    from constrain.server import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(constrain.load()), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def generate(page: Any) -> None:
    page.click("#generate")
    page.wait_for_selector("#generate:not([disabled])", timeout=180_000)


def shoot(page: Any, out: Path, name: str, selector: str | None = None) -> None:
    """The viewport, or one element of it (smaller files)."""
    path = out / f"{name}.png"
    if selector is None:
        page.screenshot(path=str(path))
    else:
        page.locator(selector).screenshot(path=str(path))
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size // 1024} KB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "playground")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    base, server = start_server()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready=true]", state="attached")

            # 1. A constrained answer and its token view: forced, sampled and closer tokens.
            page.fill("#system", "You describe people as JSON.")
            page.select_option("#p0-format", "json")
            page.fill("#p0-schema", json.dumps(PERSON, indent=2))
            page.fill("#p0-max_tokens", "30")
            page.fill("#new-content", "Describe a person who lives in Paris.")
            generate(page)
            page.hover('.pane[data-pane="0"] .tokens .tok.sampled')
            shoot(page, args.out, "playground")

            # 2. A schema error shown at its JSON pointer, with the API's message.
            page.select_option('.pane[data-pane="0"] [aria-label="Example schemas"]', "invalid (for the error view)")
            generate(page)
            shoot(page, args.out, "schema-error", '.pane[data-pane="0"] details.constraint')

            # 3. Compare: the same conversation, JSON in pane A, a regex in pane B, both streaming.
            page.fill("#p0-schema", json.dumps(PERSON, indent=2))
            page.click('[aria-label="Delete message 2"]')
            page.check("#compare")
            page.fill("#p1-max_tokens", "30")
            page.select_option("#p1-format", "regex")
            page.fill("#p1-regex", r"[A-Z][a-z]{2,12}, \d{2}, [A-Z][a-z]{2,12}")
            for i in (0, 1):  # parameters folded, so that both answers show
                page.click(f'.pane[data-pane="{i}"] details.params summary')
            generate(page)
            page.evaluate("window.scrollTo(0, 0)")
            shoot(page, args.out, "compare")

            # 4. Tools: the answer's tool_calls rendered as calls.
            page.uncheck("#compare")
            page.click("#reset")
            page.wait_for_selector("body[data-ready=true]", state="attached")
            page.click('.pane[data-pane="0"] .tools summary')
            page.check("#p0-toolsOn")
            page.fill("#p0-tool_choice", "required")
            page.fill("#p0-max_tokens", "64")
            page.fill("#new-content", "What is the weather in Paris?")
            generate(page)
            shoot(page, args.out, "tools", '.pane[data-pane="0"] .output')

            # 5. The code view: the same request as Python.
            page.click("#view-code")
            page.select_option("#code-lang", "python-openai")
            shoot(page, args.out, "code", "#code-view")
            browser.close()
    finally:
        server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
