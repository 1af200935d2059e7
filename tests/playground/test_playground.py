"""The Playground in a real browser: every feature of issue #17, against a real server and model.

Greedy (temperature 0) and short answers keep it deterministic and quick; each test gets a
fresh browser context, so localStorage starts empty unless the test says otherwise.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.playground.conftest import API_KEY, Session

pytestmark = pytest.mark.model

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"]}

# Records the lengths an element's text goes through: proof that an answer arrived in pieces.
WATCH = """([selector, key]) => {
  const el = document.querySelector(selector);
  window[key] = {lengths: [], times: []};
  new MutationObserver(() => {
    const rec = window[key];
    if (rec.lengths[rec.lengths.length - 1] !== el.textContent.length) {
      rec.lengths.push(el.textContent.length);
      rec.times.push(performance.now());
    }
  }).observe(el, {childList: true, characterData: true, subtree: true});
}"""


def pane(i: int) -> str:
    return f'.pane[data-pane="{i}"]'


def set_field(page: Any, i: int, name: str, value: str) -> None:
    page.fill(f"#p{i}-{name}", value)


def generate(page: Any) -> None:
    page.click("#generate")
    page.wait_for_selector("#generate:not([disabled])")


def say(page: Any, text: str) -> None:
    page.fill("#new-content", text)
    generate(page)


def use_schema(page: Any, i: int, schema: dict[str, Any]) -> None:
    page.select_option(f"#p{i}-format", "json")
    page.fill(f"#p{i}-schema", json.dumps(schema))


def stored(page: Any) -> dict[str, Any]:
    return json.loads(page.evaluate("localStorage.getItem('constrain.playground.v1')"))  # type: ignore[no-any-return]


def snippet(page: Any, lang: str) -> str:
    page.click("#view-code")
    page.select_option("#code-lang", lang)
    text: str = page.inner_text("#code-text")
    page.click("#view-ui")
    return text


# ----------------------------------------------------------------------------- loading, offline, labels


def test_page_loads_quickly_offline_with_labelled_controls(session: Session) -> None:
    started = time.perf_counter()
    page = session.open()
    elapsed = time.perf_counter() - started
    # The page and its assets only (the model list may wait for the model): well under a second.
    load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    assert load_ms < 1000, f"the page took {load_ms:.0f} ms to load"
    assert elapsed < 5
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => !el.closest('[hidden]') && el.labels.length === 0 && !el.getAttribute('aria-label'))
        .map((el) => el.id || el.outerHTML.slice(0, 60))""")
    assert unlabelled == []
    # Every asset came from this origin; the response carries a same-origin-only policy.
    response = httpx.get(session.base_url + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers
    assets = {r.url.removeprefix(session.base_url) for r in session.requests}
    assert {"/", "/playground/app.js", "/playground/style.css", "/v1/models"} <= assets


# ----------------------------------------------------------------------------- conversation


def test_typed_message_streams_an_answer_into_the_conversation(session: Session) -> None:
    page = session.open()
    set_field(page, 0, "max_tokens", "16")
    page.evaluate(WATCH, [f"{pane(0)} .answer", "answerWatch"])
    page.fill("#new-content", "Name three colours.")
    page.press("#new-content", "Control+Enter")  # the keyboard way
    page.wait_for_selector("#generate:not([disabled])")
    answer = page.inner_text(f"{pane(0)} .answer")
    assert answer.strip()
    lengths = page.evaluate("window.answerWatch.lengths")
    assert len([n for n in lengths if 0 < n < len(answer)]) >= 2, f"no partial answers seen: {lengths}"
    # The conversation now holds the question and the streamed answer.
    assert page.locator("#messages li").count() == 2
    assert page.input_value("#msg-1-role") == "assistant"
    assert page.input_value("#msg-1-content") == answer
    assert "completion 16 tokens" in page.inner_text(f"{pane(0)} .stats")
    assert "tokens/s" in page.inner_text(f"{pane(0)} .stats")
    assert "first token" in page.inner_text(f"{pane(0)} .stats")


def test_roles_order_edit_delete_and_regenerate(session: Session) -> None:
    page = session.open()
    for role, text in (("user", "first"), ("assistant", "second"), ("user", "third")):
        page.select_option("#new-role", role)
        page.fill("#new-content", text)
        page.click("#add-message")
    assert [m["content"] for m in stored(page)["messages"]] == ["first", "second", "third"]
    page.select_option("#msg-2-role", "system")
    page.click('[aria-label="Move message 3 up"]')
    page.fill("#msg-0-content", "first, edited")
    messages = stored(page)["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first, edited"), ("system", "third"), ("assistant", "second")]
    page.click('[aria-label="Delete message 2"]')
    assert [m["content"] for m in stored(page)["messages"]] == ["first, edited", "second"]
    # The request sends them in this order, with these roles.
    curl = snippet(page, "curl")
    sent = json.loads(shlex.split(curl.replace("\\\n", " "))[-1])
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [("user", "first, edited"), ("assistant", "second")]
    # Regenerate from the assistant message: it is replaced by a new answer.
    set_field(page, 0, "max_tokens", "8")
    page.click('[aria-label="Regenerate from message 2"]')
    page.wait_for_selector("#generate:not([disabled])")
    messages = stored(page)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] != "second" and messages[1]["content"]


# ----------------------------------------------------------------------------- models and parameters


def test_model_picker_lists_the_servers_models(session: Session) -> None:
    page = session.open()
    served = [m["id"] for m in httpx.get(session.base_url + "/v1/models").json()["data"]]
    options = page.eval_on_selector_all("#p0-model option", "els => els.map((e) => e.value)")
    assert options == served
    assert page.input_value("#p0-model") == served[0]
    assert f'"model": "{served[0]}"' in snippet(page, "js-fetch")


def test_parameter_errors_show_the_apis_message_next_to_the_control(session: Session) -> None:
    page = session.open()
    set_field(page, 0, "temperature", "3")
    say(page, "Hello")
    error = page.inner_text(f'{pane(0)} [data-error-for="temperature"]')
    api = httpx.post(session.base_url + "/v1/chat/completions",
                     json={"messages": [{"role": "user", "content": "x"}], "temperature": 3}).json()["error"]
    assert error == api["message"]
    assert page.get_attribute("#p0-temperature", "aria-invalid") == "true"
    assert page.locator(f"{pane(0)} .badge.error").count() == 1
    # A fixed value clears it on the next run; the failed answer left no empty message behind.
    set_field(page, 0, "temperature", "0")
    set_field(page, 0, "max_tokens", "4")
    generate(page)
    assert page.inner_text(f'{pane(0)} [data-error-for="temperature"]') == ""
    assert [m["role"] for m in stored(page)["messages"]] == ["user", "assistant"]


# ----------------------------------------------------------------------------- compare


def test_compare_streams_two_panes_at_once(session: Session) -> None:
    page = session.open()
    page.check("#compare")
    set_field(page, 0, "max_tokens", "12")
    set_field(page, 1, "max_tokens", "12")
    page.select_option("#p1-format", "regex")
    page.fill("#p1-regex", r"[a-z ]{1,60}")
    page.select_option("#p1-model", page.input_value("#p0-model"))
    for i in (0, 1):
        page.evaluate(WATCH, [f"{pane(i)} .answer", f"watch{i}"])
    say(page, "Describe the sea.")
    a = page.evaluate("window.watch0")
    b = page.evaluate("window.watch1")
    assert a["lengths"] and b["lengths"]
    # Both streamed at once: each pane's first text came before the other pane's last.
    assert a["times"][0] < b["times"][-1] and b["times"][0] < a["times"][-1]
    assert len(a["lengths"]) > 2 and len(b["lengths"]) > 2
    text_b = page.inner_text(f"{pane(1)} .answer")
    assert all(c.islower() or c == " " for c in text_b)
    assert "matches the pattern" in page.inner_text(f"{pane(1)} .badge") or "length" in page.inner_text(f"{pane(1)} .badge")
    # In compare mode the answers stay in their panes until one is kept.
    assert [m["role"] for m in stored(page)["messages"]] == ["user"]
    page.click(f"{pane(1)} .keep")
    assert stored(page)["messages"][-1] == {"role": "assistant", "content": text_b}


# ----------------------------------------------------------------------------- constraints


def test_schema_error_is_shown_at_its_pointer(session: Session) -> None:
    page = session.open()
    page.select_option("#p0-format", "json")
    page.select_option(f'{pane(0)} [aria-label="Example schemas"]', "invalid (for the error view)")
    say(page, "Hi")
    error = page.inner_text(f'{pane(0)} [data-error-for="response_format"]')
    assert error.startswith("at /properties/age/type (line 5): ")
    assert "'integr' is not valid" in error
    slot = f'{pane(0)} [data-error-for="response_format"]'
    assert page.get_attribute(slot, "data-pointer") == "/properties/age/type"
    # The editor selects the value at the pointer.
    selected = page.evaluate("(() => { const e = document.querySelector('#p0-schema'); "
                             "return e.value.slice(e.selectionStart, e.selectionEnd); })()")
    assert selected == '"integr"' == page.get_attribute(slot, "data-selected")
    assert page.get_attribute("#p0-schema", "aria-invalid") == "true"


def test_schema_answer_validates_and_the_token_view_marks_forced_tokens(session: Session) -> None:
    page = session.open()
    use_schema(page, 0, PERSON)
    set_field(page, 0, "max_tokens", "24")
    say(page, "Describe a person.")
    content = page.inner_text(f"{pane(0)} .answer")
    badge = page.inner_text(f"{pane(0)} .badge")
    assert "valid" in badge, badge
    value = json.loads(content)
    assert set(value) == {"name", "age"}
    hows = page.eval_on_selector_all(f"{pane(0)} .tokens .tok", "els => els.map((e) => e.dataset.how)")
    texts = page.eval_on_selector_all(f"{pane(0)} .tokens .tok", "els => els.map((e) => e.textContent)")
    assert "".join(texts) == content
    assert hows[0] == "forced" and texts[0] == '{"'  # the constraint allows only this start
    assert "sampled" in hows
    # Hover: the token's log-probability and its alternatives.
    page.hover(f"{pane(0)} .tokens .tok.sampled")
    detail = page.inner_text(f"{pane(0)} .token-detail")
    assert "sampled, logprob" in detail and detail.count("\n") >= 2
    title = page.get_attribute(f"{pane(0)} .tokens .tok.forced", "title")
    assert title is not None and title.startswith("forced · logprob 0.000")
    # Keyboard: tokens take the focus, and focus shows the same detail.
    page.focus(f"{pane(0)} .tokens .tok.forced")
    assert "forced, logprob 0.000" in page.inner_text(f"{pane(0)} .token-detail")


def test_budget_closer_tokens_are_marked(session: Session) -> None:
    page = session.open()
    use_schema(page, 0, {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]})
    set_field(page, 0, "max_tokens", "16")
    say(page, "Tell a long story.")
    assert page.locator(f"{pane(0)} .tokens .tok.closer").count() >= 1
    assert "closed by the budget closer" in page.inner_text(f"{pane(0)} .badge")
    json.loads(page.inner_text(f"{pane(0)} .answer"))


def test_grammar_picker_loads_a_shipped_grammar(session: Session) -> None:
    page = session.open()
    page.select_option("#p0-format", "grammar")
    page.select_option(f'{pane(0)} [aria-label="Shipped grammars"]', "yes_no")
    assert "VERDICT" in page.input_value("#p0-grammar")
    set_field(page, 0, "max_tokens", "12")
    say(page, "Is the sky blue?")
    assert page.inner_text(f"{pane(0)} .answer").split(":")[0] in ("yes", "no")


def test_tool_call_renders_and_takes_a_result(session: Session) -> None:
    page = session.open()
    page.click(f"{pane(0)} .tools summary")
    page.check("#p0-toolsOn")
    page.fill("#p0-tool_choice", "required")
    set_field(page, 0, "max_tokens", "64")
    say(page, "What is the weather in Paris?")
    assert page.inner_text(f"{pane(0)} .answer-calls .call-name") == "get_weather"
    args = json.loads(page.inner_text(f"{pane(0)} .answer-calls .call-args"))
    assert set(args) == {"city"}
    assert "tool_calls" in page.inner_text(f"{pane(0)} .badge")
    # The conversation shows the call as a call; "Add result" adds a tool message answering it.
    assert page.inner_text("#messages li[data-index='1'] .call-name") == "get_weather"
    page.click("#messages li[data-index='1'] .add-result")
    page.fill("#msg-2-content", '{"temperature": 18}')
    call_id = stored(page)["messages"][1]["tool_calls"][0]["id"]
    assert page.input_value("#msg-2-call-id") == call_id
    page.fill("#p0-tool_choice", "none")
    set_field(page, 0, "max_tokens", "8")
    generate(page)  # multi-turn: the history with the call and its result is accepted
    assert page.locator(f"{pane(0)} .badge.error").count() == 0
    assert [m["role"] for m in stored(page)["messages"]] == ["user", "assistant", "tool", "assistant"]


# ----------------------------------------------------------------------------- code view


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    """Run a snippet as a user would: without the offline switch ``constrain.load`` sets for itself."""
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_code_snippets_give_the_pages_answer(session: Session, tmp_path: Path) -> None:
    page = session.open()
    use_schema(page, 0, PERSON)
    set_field(page, 0, "max_tokens", "24")
    page.uncheck("#p0-stream")
    page.fill("#system", "Answer in JSON.")
    say(page, "Describe a person.")
    content = page.inner_text(f"{pane(0)} .answer")
    assert content
    python_hf = snippet(page, "python-hf")
    python_openai = snippet(page, "python-openai")
    curl = snippet(page, "curl")
    assert "token_info" not in python_hf + python_openai + curl  # the page's own view, not the request
    for code in (python_hf, python_openai):
        script = tmp_path / "snippet.py"
        script.write_text(code)
        assert _run([sys.executable, str(script)]).strip() == content
    body = json.loads(_run(["bash", "-c", curl]))
    assert body["choices"][0]["message"]["content"] == content
    node = shutil.which("node")
    if node is not None:  # the fetch snippet too, where Node.js (18+: fetch built in) is installed
        script = tmp_path / "snippet.mjs"
        script.write_text(snippet(page, "js-fetch"))
        assert _run([node, str(script)]).strip() == content
    # Streamed, the Python snippet prints the same text.
    page.check("#p0-stream")
    script = tmp_path / "stream.py"
    script.write_text(snippet(page, "python-hf"))
    assert _run([sys.executable, str(script)]).strip() == content
    # Switching views kept the conversation and the answer.
    assert page.locator("#messages li").count() == 2
    assert page.inner_text(f"{pane(0)} .answer") == content
    # One click copies the snippet.
    session.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=session.base_url)
    page.click("#view-code")
    page.click("#copy-code")
    page.wait_for_selector("#status:has-text('copied')")
    assert page.evaluate("navigator.clipboard.readText()") == page.inner_text("#code-text")
    page.click("#view-ui")
    js = snippet(page, "js-fetch")
    assert "fetch(" in js and session.base_url in js
    assert "new OpenAI" in snippet(page, "js-openai")


# ----------------------------------------------------------------------------- state


def test_reload_keeps_the_state_and_a_shared_link_restores_it(session: Session, browser: Any) -> None:
    page = session.open()
    page.fill("#system", "Be brief.")
    page.fill("#new-content", "What is 2+2?")
    page.click("#add-message")
    set_field(page, 0, "seed", "42")
    page.select_option("#p0-format", "regex")
    page.fill("#p0-regex", "[0-9]+")
    page.check("#compare")
    set_field(page, 1, "top_p", "0.5")
    page.reload()
    page.wait_for_selector("body[data-ready=true]", state="attached")
    assert page.input_value("#system") == "Be brief."
    assert page.input_value("#msg-0-content") == "What is 2+2?"
    assert page.input_value("#p0-seed") == "42" and page.input_value("#p0-regex") == "[0-9]+"
    assert page.is_checked("#compare") and page.input_value("#p1-top_p") == "0.5"
    page.click("#share")
    link = page.get_attribute("#share", "data-link")
    assert link is not None and link.startswith(session.base_url + "/#s=")
    other = Session(browser, session.base_url)  # another browser profile: empty storage
    try:
        opened = other.page
        opened.goto(link)
        opened.wait_for_selector("body[data-ready=true]", state="attached")
        assert opened.input_value("#system") == "Be brief."
        assert opened.input_value("#msg-0-content") == "What is 2+2?"
        assert opened.input_value("#p0-regex") == "[0-9]+" and opened.input_value("#p1-top_p") == "0.5"
        assert "#s=" not in opened.url  # restored, then taken off the address bar
        assert other.errors == []
    finally:
        other.close()


def test_api_key_is_asked_for_and_never_shown(browser: Any, keyed_server: Any) -> None:
    s = Session(browser, keyed_server.base_url)
    try:
        page = s.open()
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#api-key", API_KEY)
        page.click("#save-key")
        page.wait_for_function("document.querySelectorAll('#p0-model option').length >= 1 && "
                               "document.querySelector('#p0-model').value !== '(loading)'")
        assert page.input_value("#api-key") == ""
        set_field(page, 0, "max_tokens", "4")
        say(page, "Hi")
        assert page.locator(f"{pane(0)} .badge.error").count() == 0
        assert page.inner_text(f"{pane(0)} .answer")
        page.click("#share")
        page.uncheck("#p0-stream")
        snippets = [snippet(page, lang) for lang in ("python-hf", "python-openai", "js-fetch", "js-openai", "curl")]
        assert all("CONSTRAIN_API_KEY" in text for text in snippets)
        shown = [page.content(), *snippets, page.get_attribute("#share", "data-link") or "",
                 page.evaluate("JSON.stringify(localStorage)")]
        assert not any(API_KEY in text for text in shown)
        assert page.evaluate("sessionStorage.getItem('constrain.apiKey')") == API_KEY
        # The snippet runs with the key from the environment.
        body = json.loads(_run(["bash", "-c", snippets[-1]], env={"CONSTRAIN_API_KEY": API_KEY}))
        assert body["choices"][0]["message"]["content"]
        assert s.errors == [] and s.foreign_requests() == []
    finally:
        s.close()


# ----------------------------------------------------------------------------- images


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a1e1c1f50000000049454e44ae426082")


def test_images_are_attached_as_data_urls(session: Session, tmp_path: Path) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    page = session.open()
    page.fill("#new-content", "What is in this picture?")
    page.click("#add-message")
    page.set_input_files("#msg-0-image", str(image))
    page.wait_for_selector("#messages li[data-index='0'] .images img")
    assert page.get_attribute("#messages li[data-index='0'] .images img", "src").startswith("data:image/")
    with page.expect_request("**/v1/chat/completions") as request:
        generate(page)
    sent = json.loads(request.value.post_data)
    parts = sent["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What is in this picture?"}
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/")
    # The embedded model reads text only: the API's refusal names the message.
    assert "message 1: " in page.inner_text("#conversation-error")
    assert "reads text only" in page.inner_text("#conversation-error")
