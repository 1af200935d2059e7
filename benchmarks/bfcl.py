"""BFCL (Berkeley Function Calling Leaderboard) through ``model.chat_completion`` on the embedded model.

Per category and mode: the rate of outputs that are parseable calls with schema-valid
arguments (complete calls the budget closer had to steer shut, finish_reason "length", are
counted, and shown in their own column), BFCL's own AST accuracy (``bfcl_eval``'s ``ast_checker``), the rate of
arguments with undeclared keys, and for "auto" how often the model answered in text.
"unconstrained" is the same model with the same prompt (the tools block of "required",
or of "auto" on irrelevance) and no grammar, its calls parsed best-effort.

    .venv/bin/python benchmarks/bfcl.py --categories simple --modes required,named --max-tokens 128
    .venv/bin/python benchmarks/bfcl.py --categories irrelevance,simple --modes auto --limit 60

Needs ``bfcl-eval`` (``pip install --no-deps bfcl-eval``): its data files and checker.
One JSON line per item goes to ``--out``; the summary table is printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema

CATEGORIES = {
    "simple": "simple_python",
    "multiple": "multiple",
    "parallel": "parallel",
    "irrelevance": "irrelevance",
}
MODES = ("required", "named", "auto", "unconstrained")
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def data_file(stem: str, answers: bool = False) -> Path | None:
    """The newest BFCL data file for a category (v4, else v3 names)."""
    import bfcl_eval

    root = Path(bfcl_eval.__file__).parent / "data"
    if answers:
        root = root / "possible_answer"
    for version in ("v4", "v3"):
        path = root / f"BFCL_{version}_{stem}.json"
        if path.is_file():
            return path
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def to_json_schema(node: Any) -> Any:
    """BFCL's parameter dialect (Python type names) -> JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            mapped = _TYPES.get(value, value)
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            out[key] = to_json_schema(value)
        elif key == "optional":
            continue  # BFCL's own flag; "required" already says it
        else:
            out[key] = value
    return out


def open_objects(node: Any) -> Any:
    """Every object schema says ``additionalProperties: true`` (our tool default is closed)."""
    if isinstance(node, list):
        return [open_objects(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: open_objects(v) for k, v in node.items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = True
    return out


def tools_of(functions: list[dict[str, Any]], *, open_: bool = False) -> list[dict[str, Any]]:
    convert = (lambda p: open_objects(to_json_schema(p))) if open_ else to_json_schema
    return [
        {
            "type": "function",
            "function": {
                "name": f["name"],
                "description": f.get("description", ""),
                "parameters": convert(f.get("parameters", {"type": "dict", "properties": {}})),
            },
        }
        for f in functions
    ]


CHECKER_MODEL = "constrain"


def ast_checker() -> Any:
    """BFCL's AST checker, without the SDKs of every vendor that its model table imports.

    The checker only reads ``MODEL_CONFIG_MAPPING[name].underscore_to_dot`` (our function
    names keep their dots), so a one-entry table stands in for the real one.
    """
    import types

    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        stub = types.ModuleType(name)
        stub.MODEL_CONFIG_MAPPING = {CHECKER_MODEL: types.SimpleNamespace(underscore_to_dot=False)}  # type: ignore[attr-defined]
        sys.modules[name] = stub
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker as checker

    return checker


def parse_best_effort(text: str) -> list[tuple[str, Any]] | None:
    """Calls from free text: our envelope, else the first JSON list/object with name + arguments."""
    found = re.search(r"<tool_call>(.*?)(</tool_call>|$)", text, re.S)
    candidates = [found.group(1)] if found else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for start in (i for i, ch in enumerate(chunk) if ch in "[{"):
            try:
                value, _ = decoder.raw_decode(chunk[start:])
            except json.JSONDecodeError:
                continue
            items = value if isinstance(value, list) else [value]
            calls = []
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    args = item.get("arguments", item.get("parameters", {}))
                    if isinstance(args, str):
                        try:
                            args = json.loads(args)
                        except json.JSONDecodeError:
                            return None
                    calls.append((item["name"], args))
            if calls:
                return calls
            break
    return None


def run_item(model: Any, item: dict, answer: dict | None, category: str, mode: str, max_tokens: int,
             open_: bool = False) -> dict:
    from constrain.requests import parse_request
    from constrain.tools import resolve, tools_text

    messages = item["question"][0]
    tools = tools_of(item["function"], open_=open_)
    parallel = "parallel" in category
    request: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "parallel_tool_calls": parallel,
    }
    if mode == "unconstrained":
        choice = "auto" if category == "irrelevance" else "required"
        setup = resolve(parse_request({**request, "tools": tools, "tool_choice": choice}))
        assert setup is not None
        request["messages"] = [{"role": "system", "content": tools_text(setup)}, *messages]
        del request["parallel_tool_calls"]
    else:
        request["tools"] = tools
        if mode == "named":
            request["tool_choice"] = next(iter(answer["ground_truth"][0])) if answer else tools[0]["function"]["name"]
        else:
            request["tool_choice"] = mode
    started = time.perf_counter()
    error = None
    try:
        out = model.chat_completion(**request)
    except Exception as exc:  # noqa: BLE001 - a benchmark records failures instead of stopping
        return {"id": item["id"], "category": category, "mode": mode, "error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - started
    choice = out.choices[0]
    message = choice.message
    calls: list[tuple[str, Any]] | None
    if mode == "unconstrained":
        calls = parse_best_effort(message.content or "")
    elif message.tool_calls:
        calls = []
        for call in message.tool_calls:
            try:
                calls.append((call.function.name, json.loads(call.function.arguments)))
            except json.JSONDecodeError:
                calls = None
                break
    else:
        calls = None
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    valid = bool(calls) and all(
        name in schemas and isinstance(args, dict) and jsonschema.Draft202012Validator(schemas[name]).is_valid(args)
        for name, args in calls or []
    )
    undeclared = bool(calls) and any(
        isinstance(args, dict) and set(args) - set(schemas.get(name, {}).get("properties", {}))
        for name, args in calls or []
    )
    record: dict[str, Any] = {
        "id": item["id"], "category": category, "mode": mode, "finish_reason": choice.finish_reason,
        "parsed": calls is not None and len(calls) > 0, "schema_valid": valid, "undeclared_keys": undeclared,
        "text_answer": not calls, "completion_tokens": out.usage.completion_tokens, "seconds": round(seconds, 2),
        "output": [{"name": n, "arguments": a} for n, a in calls] if calls else (message.content or "")[:300],
        "error": error,
    }
    if category == "irrelevance":
        record["ast_ok"] = not calls
    elif calls and answer is not None:
        from bfcl_eval.constants.enums import Language

        try:
            verdict = ast_checker()(
                item["function"], [{n: a} for n, a in calls], answer["ground_truth"], Language.PYTHON,
                CATEGORIES[category], CHECKER_MODEL,
            )
            record["ast_ok"] = bool(verdict["valid"])
        except Exception as exc:  # noqa: BLE001 - the checker chokes on some malformed outputs
            record["ast_ok"] = False
            record["ast_error"] = f"{type(exc).__name__}: {exc}"
    else:
        record["ast_ok"] = False
    return record


def summarize(records: list[dict]) -> str:
    rows = ["| category | mode | n | parseable + schema-valid | closed by budget | AST accuracy | undeclared keys "
            "| text answers | errors | mean tokens | mean s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["category"], r["mode"]), []).append(r)

    def pct(values: list[bool]) -> str:
        return f"{100 * sum(values) / len(values):.1f}%" if values else "-"

    for (category, mode), rs in groups.items():
        ok = [r for r in rs if not r.get("error")]
        rows.append(
            f"| {category} | {mode} | {len(rs)} | {pct([r['parsed'] and r['schema_valid'] for r in ok])} "
            f"| {pct([r['finish_reason'] == 'length' and r['parsed'] and r['schema_valid'] for r in ok])} "
            f"| {pct([r['ast_ok'] for r in ok])} | {pct([r['undeclared_keys'] for r in ok])} "
            f"| {pct([r['text_answer'] for r in ok])} | {len(rs) - len(ok)} "
            f"| {sum(r['completion_tokens'] for r in ok) / max(1, len(ok)):.1f} "
            f"| {sum(r['seconds'] for r in ok) / max(1, len(ok)):.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", default="simple,multiple,parallel,irrelevance")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--limit", type=int, default=None, help="first N items per category")
    parser.add_argument("--offset", type=int, default=0, help="skip the first N items per category")
    parser.add_argument("--ids", default=None,
                        help="only these items: comma-separated ids, or @FILE with one id per line")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--open-objects", action="store_true",
                        help="tool schemas allow undeclared keys (additionalProperties: true); default closed")
    parser.add_argument("--tool-call-bias", type=float, default=None,
                        help="load(tool_call_bias=...); default: the model's (+3 for the embedded model)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="JSONL of per-item records")
    parser.add_argument("--summarize", nargs="*", default=None, help="only print the table of these JSONL files")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        records = [r for path in args.summarize for r in read_jsonl(Path(path))]
        print(summarize(records))
        return 0

    import torch

    import constrain

    if args.threads:
        torch.set_num_threads(args.threads)
    model = constrain.load(tool_call_bias=args.tool_call_bias)
    out = open(args.out, "a", encoding="utf-8") if args.out else None  # noqa: SIM115
    records: list[dict] = []
    for category in args.categories.split(","):
        stem = CATEGORIES[category]
        path = data_file(stem)
        if path is None:
            print(f"no BFCL data for {category}", file=sys.stderr)
            continue
        items = read_jsonl(path)[args.offset :]
        if args.ids:
            wanted = set(Path(args.ids[1:]).read_text().split() if args.ids.startswith("@") else args.ids.split(","))
            items = [item for item in items if item["id"] in wanted]
        if args.limit is not None:
            items = items[: args.limit]
        answers_path = data_file(stem, answers=True)
        answers = {a["id"]: a for a in read_jsonl(answers_path)} if answers_path else {}
        for mode in args.modes.split(","):
            if mode == "named" and category in ("irrelevance", "parallel"):
                continue  # a named choice forces one call: meaningless there
            for item in items:
                record = run_item(model, item, answers.get(item["id"]), category, mode, args.max_tokens,
                                  args.open_objects)
                record["close_objects"] = not args.open_objects
                record["tool_call_bias"] = model.tool_call_bias
                records.append(record)
                if out:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
    print(summarize(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
