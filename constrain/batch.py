"""The batch job: an OpenAI Batch file through the model's batch (``Model.batch`` is the Python form).

File format (OpenAI's Batch API, also ``vllm run-batch``): each input line is
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``; each output
line is ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
A request the API would refuse (a bad field, an unsupported schema) gets its HTTP status and
the server's error body in ``response``; a line that is no request at all (not JSON, no
``custom_id``, another URL) gets ``response: null`` and ``error: {"code", "message"}``. Neither
stops the job. Lines are written as they finish (output order is not input order: match them
by ``custom_id``); a job run again with the same output file skips the lines already there, so
an interrupted job resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constrain.errors import ConstrainError, InvalidRequestError
from constrain.model import Model, run_sync

URL = "/v1/chat/completions"
log = logging.getLogger("constrain.batch")


@dataclass
class BatchSummary:
    """What a file job did."""

    total: int  # input lines
    skipped: int  # already in the output (resumed)
    succeeded: int
    failed: int  # lines answered with an error
    seconds: float

    @property
    def requests_per_second(self) -> float:
        done = self.succeeded + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- files


def answered_lines(output: Path) -> tuple[set[str], set[int]]:
    """custom_ids already answered in ``output``, and input lines answered without one.

    A last line cut short by an interruption is removed, so that appending starts clean.
    """
    if not output.is_file():
        return set(), set()
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with output.open("r+b") as fh:
            fh.truncate(cut)
        data = data[:cut]
    ids: set[str] = set()
    lines: set[int] = set()
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("custom_id"), str):
            ids.add(record["custom_id"])
        elif isinstance(record, dict) and isinstance(record.get("line"), int):
            lines.add(record["line"])
    return ids, lines


def _parse_line(number: int, raw: str) -> tuple[str | None, Any, str | None]:
    """(custom_id, body, problem) of one input line."""
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, None, f"line {number} is not JSON: {exc}"
    if not isinstance(item, dict):
        return None, None, f"line {number} must be a JSON object"
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, None, f"line {number} has no `custom_id` (a non-empty string)"
    if item.get("method", "POST") != "POST":
        return custom_id, None, f"`method` must be POST, got {item.get('method')!r}"
    url = item.get("url", URL)
    if url not in (URL, "/chat/completions"):
        return custom_id, None, f"`url` must be {URL}, got {url!r}"
    if "body" not in item:
        return custom_id, None, "the line has no `body`"
    return custom_id, item["body"], None


def output_line(custom_id: str | None, *, status: int | None = None, body: Any = None,
                code: str | None = None, message: str | None = None, line: int | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id}
    if status is not None:
        record["response"] = {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}", "body": body}
        record["error"] = None
    else:
        record["response"] = None
        record["error"] = {"code": code, "message": message}
    if custom_id is None and line is not None:
        record["line"] = line  # lets a resumed job skip it
    return record


def record_text(record: dict[str, Any]) -> str:
    """One output line's JSON (compact, non-ASCII kept)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def answer_line(model: Model, custom_id: str | None, body: Any, line: int, *,
                      default_max_tokens: int | None) -> tuple[dict[str, Any], bool]:
    """One request's output line, and whether it succeeded: the completion, the error a server
    would send for it, or (a bug) a 500 that is logged, so that one line never stops a job."""
    try:
        result = await model.answer_async(body, default_max_tokens=default_max_tokens)
    except ConstrainError as exc:
        return output_line(custom_id, status=exc.status_code, body=exc.to_dict(), line=line), False
    except Exception as exc:
        log.exception("batch request %s (line %d) failed", custom_id, line)
        bug = ConstrainError(f"{type(exc).__name__}: {exc}")
        return output_line(custom_id, status=bug.status_code, body=bug.to_dict(), line=line), False
    return output_line(custom_id, status=200, body=result.model_dump(mode="json"), line=line), True


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            if raw.strip():
                yield number, raw


def run_file(model: Model, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *,
             progress: bool = True, default_max_tokens: int | None = None, window: int | None = None) -> BatchSummary:
    """Answer every request of an OpenAI Batch input file into ``output_path`` (appending; lines
    already there are skipped). ``default_max_tokens`` applies to bodies that set none."""
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise InvalidRequestError(f"input file {source} does not exist", param="input")
    done_ids, done_lines = answered_lines(target)
    return run_sync(_file_job(model, source, target, done_ids, done_lines, progress=progress,
                          default_max_tokens=default_max_tokens,
                          window=window or 2 * model.max_batch))


Todo = list[tuple[int, str | None, Any, str | None]]


def plan_lines(source: Path, done_ids: set[str], done_lines: set[int]) -> tuple[int, int, Todo]:
    """(input lines, lines skipped as already answered, the lines to do: number, custom_id, body,
    problem). A repeated ``custom_id`` is a problem of the later line; any runner of the file
    (this one, ``constrain.scale``'s Ray job) decides the same way."""
    entries = list(_lines(source))
    seen: set[str] = set()
    todo: Todo = []
    skipped = 0
    for number, raw in entries:
        custom_id, body, problem = _parse_line(number, raw)
        if (custom_id is not None and custom_id in done_ids and custom_id not in seen) or number in done_lines:
            skipped += 1
            seen.add(custom_id or "")
            continue
        if custom_id is not None and custom_id in seen:
            problem = f"duplicate `custom_id` {custom_id!r} (line {number})"
            custom_id = None
        if custom_id is not None:
            seen.add(custom_id)
        todo.append((number, custom_id, body, problem))
    return len(entries), skipped, todo


async def _file_job(model: Model, source: Path, target: Path, done_ids: set[str], done_lines: set[int], *,
                    progress: bool, default_max_tokens: int | None, window: int) -> BatchSummary:
    from tqdm import tqdm

    started = time.perf_counter()
    total, skipped, todo = plan_lines(source, done_ids, done_lines)
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(total=len(todo), unit="req", desc="constrain batch", disable=not progress, file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(window)
    with target.open("a", encoding="utf-8") as out:

        def write(record: dict[str, Any], ok: bool) -> None:
            out.write(record_text(record) + "\n")
            out.flush()
            counts["ok" if ok else "failed"] += 1
            bar.update(1)

        async def one(number: int, custom_id: str | None, body: Any, problem: str | None) -> None:
            if problem is not None:
                write(output_line(custom_id, code="invalid_line", message=problem, line=number), False)
                return
            async with gate:
                write(*await answer_line(model, custom_id, body, number, default_max_tokens=default_max_tokens))

        try:
            await asyncio.gather(*(one(*item) for item in todo))
        finally:
            bar.close()
    return BatchSummary(total=total, skipped=skipped, succeeded=counts["ok"], failed=counts["failed"],
                        seconds=time.perf_counter() - started)
