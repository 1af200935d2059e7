"""The ``constrain`` command: ``chat`` runs one request, ``serve`` serves HTTP, ``batch`` runs a file,
``compile`` prints a constraint's grammar for a GPU server.

Argument parsing only; the work happens in ``constrain.model`` and ``constrain.server``.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S
from constrain.decoding.core import DEFAULT_MAX_BATCH
from constrain.decoding.runtimes.llama_cpp import DEFAULT_SLOTS
from constrain.errors import ConstrainError, InvalidRequestError
from constrain.images import ImagePolicy
from constrain.loading import RUNTIME_NAMES, one_torch_thread_under_llama_cpp
from constrain.scale import require_ray
from constrain.scale.options import (
    add_batch_options,
    add_serve_options,
    batch_actors,
    serve_scaling,
)
from constrain.server.shutdown import DEFAULT_SHUTDOWN_GRACE_S


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except OSError:  # e.g. inline JSON longer than a file name may be
        return False


def _read_json_schema(value: str) -> Any:
    is_file = not value.lstrip().startswith("{") and _is_file(value)
    if not is_file and not value.lstrip().startswith(("{", "true")):
        raise InvalidRequestError(f"--json-schema: no such file: {value}", param="--json-schema")
    text = Path(value).read_text(encoding="utf-8") if is_file else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"file {value}" if is_file else "inline value"
        raise InvalidRequestError(f"--json-schema: {where} is not JSON ({exc})", param="--json-schema") from None


def _response_format(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.json_schema:
        return {"type": "json", "value": _read_json_schema(args.json_schema)}
    if args.regex:
        return {"type": "regex", "value": args.regex}
    if args.grammar:
        if _is_file(args.grammar):
            return {"type": "grammar", "value": Path(args.grammar).read_text(encoding="utf-8")}
        from constrain.compiler import load_grammar

        try:
            return {"type": "grammar", "value": load_grammar(args.grammar)}
        except KeyError as exc:
            raise InvalidRequestError(f"--grammar: {args.grammar} is not a file; {exc.args[0]}", param="--grammar") from None
    if args.json_object:
        return {"type": "json_object"}
    return None


def _image_part(value: str) -> dict[str, Any]:
    """``--image``: a URL as it is, a local file as a data URL (read here, by the user's own command)."""
    if "://" in value or value.startswith("data:"):
        return {"type": "image_url", "image_url": {"url": value}}
    path = Path(value).expanduser()
    if not path.is_file():
        raise InvalidRequestError(f"--image: no such file: {value}", param="--image")
    kind = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{kind};base64,{data}"}}


def _chat(args: argparse.Namespace) -> int:
    import constrain
    from constrain.compiler import parse_response_format
    from constrain.requests import parse_request

    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    images = [_image_part(value) for value in args.image or []]
    messages.append({"role": "user", "content": [*images, {"type": "text", "text": args.prompt}] if images else args.prompt})
    request: dict[str, Any] = {
        "messages": messages,
        "response_format": _response_format(args),
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "stream": args.stream,
    }
    # Bad arguments fail in milliseconds, before the model loads.
    parse_request(request)
    parse_response_format(request["response_format"])
    # The user named these images on their own command line: their hosts may be fetched, even local ones.
    hosts = tuple(urlsplit(value).hostname or "" for value in args.image or [] if "://" in value)
    model = constrain.load(args.model, engine=args.engine, whitespace="pretty" if args.pretty else "compact",
                           property_order="any" if args.any_order else "schema", runtime=args.runtime,
                           threads=args.threads, image_policy=ImagePolicy(fetch_domains=hosts, allow_private=True))
    if args.stream:
        finish = None
        for chunk in model.stream(model.prepare(request)):
            for choice in chunk.choices:
                if choice.delta.content:
                    print(choice.delta.content, end="", flush=True)
                finish = choice.finish_reason or finish
        print()
        print(f"[finish_reason: {finish}]", file=sys.stderr)
        return 0
    out = model.complete(model.prepare(request))
    print(out.choices[0].message.content)
    print(f"[finish_reason: {out.choices[0].finish_reason}, usage: {out.usage.model_dump()}]", file=sys.stderr)
    return 0


def _batch(args: argparse.Namespace) -> int:
    import constrain
    from constrain.batch import run_file

    if not Path(args.input).is_file():
        raise InvalidRequestError(f"input file {args.input} does not exist", param="input")
    actors = batch_actors(args)
    if actors is not None:  # --ray: the rows go to a pool of model actors (constrain.scale.ray_batch)
        require_ray("--ray")
        from constrain.scale.ray_batch import batch_cli

        return batch_cli(args, actors)
    one_torch_thread_under_llama_cpp([args.model], args.runtime)  # this process is the job's
    model = constrain.load(args.model, engine=args.engine, property_order="any" if args.any_order else "schema",
                           max_batch=args.max_batch, compile_timeout_s=args.compile_timeout, runtime=args.runtime,
                           threads=args.threads)
    try:
        summary = run_file(model, args.input, args.output, progress=not args.no_progress,
                           default_max_tokens=args.max_tokens_limit)
    finally:
        model.close()
    print(f"constrain batch: {summary.succeeded} answered, {summary.failed} errors, {summary.skipped} already in "
          f"{args.output}; {summary.requests_per_second:.2f} requests/s", file=sys.stderr)
    return 0


def _json_argument(value: str, option: str) -> Any:
    """An option's JSON value, inline or from a file."""
    inline = value.lstrip().startswith(("{", "["))
    if not inline and not _is_file(value):
        raise InvalidRequestError(f"{option}: no such file: {value}", param=option)
    try:
        return json.loads(value if inline else Path(value).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{option}: not JSON ({exc})", param=option) from None


def _compile(args: argparse.Namespace) -> int:
    """Print the llguidance grammar for a GPU server (vLLM, SGLang); no model is loaded."""
    from constrain.export import export_constraint

    tools = _json_argument(args.tools, "--tools") if args.tools else None
    choice: Any = args.tool_choice
    if choice is not None and choice.lstrip().startswith("{"):
        choice = _json_argument(choice, "--tool-choice")
    exported = export_constraint(
        _response_format(args), tools=tools, tool_choice=choice,
        parallel_tool_calls=False if args.no_parallel_tool_calls else None,
        whitespace="pretty" if args.pretty else "compact", close_objects=args.close_objects,
    )
    print(json.dumps(exported.to_dict(), ensure_ascii=False, indent=2) if args.json else exported.grammar.rstrip("\n"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from constrain.server import serve

    scaling = serve_scaling(args)
    if scaling is not None:  # --ray: replicas behind Ray Serve's proxy (constrain.scale.ray_serve)
        require_ray("--ray")
        from constrain.scale.ray_serve import serve_cli

        return serve_cli(args, scaling)
    return serve(args)


def _model_options(parser: argparse.ArgumentParser, *, batching: bool, several: bool = False) -> None:
    """What loads the model, for every command that loads one."""
    if several:
        parser.add_argument("--model", action="append", default=None, metavar="[NAME=]PATH",
                            help="a local HF folder, a .gguf or a packaged model's name (default: the embedded "
                                 "SmolLM2-135M); repeat as NAME=PATH to serve several")
    else:
        parser.add_argument("--model", default=None,
                            help="a local HF folder, a .gguf or a packaged model's name (default: embedded SmolLM2-135M)")
    parser.add_argument("--engine", default="llguidance")
    parser.add_argument("--runtime", choices=RUNTIME_NAMES, default="auto",
                        help="what runs the model: transformers, llama.cpp (GGUF files; pip install "
                             "'constrain[llama-cpp]') or auto (llama.cpp for a GGUF when installed)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="llama.cpp's threads (default: the CPUs but one)")
    parser.add_argument("--any-order", action="store_true",
                        help="let the model write an object's keys in any order (default: the schema's order)")
    if batching:
        parser.add_argument("--max-batch", type=int, default=None,
                            help=f"requests generated together in one forward pass (default: {DEFAULT_MAX_BATCH} on "
                                 f"transformers, {DEFAULT_SLOTS} on llama.cpp, which splits its KV cells between them)")
        parser.add_argument("--compile-timeout", type=float, default=DEFAULT_COMPILE_TIMEOUT_S, metavar="SECONDS",
                            help="how long compiling one request's schema, regex or tools may take (then a 400)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="constrain", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="answer one prompt, optionally constrained")
    chat.add_argument("prompt")
    group = chat.add_mutually_exclusive_group()
    group.add_argument("--json-schema", metavar="FILE|JSON", help="JSON Schema file (or inline JSON)")
    group.add_argument("--regex", metavar="PAT", help="regex the whole answer must match")
    group.add_argument("--grammar", metavar="FILE|NAME", help="Lark grammar file, or a shipped grammar's name")
    group.add_argument("--json-object", action="store_true", help="any JSON object")
    _model_options(chat, batching=False)
    chat.add_argument("--system", default=None, help="system message")
    chat.add_argument("--image", action="append", metavar="PATH|URL",
                      help="an image for the message (a vision-language model); repeatable")
    chat.add_argument("--stream", action="store_true")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None)
    chat.add_argument("--seed", type=int, default=None)
    chat.add_argument("--pretty", action="store_true", help="allow newlines and indentation in JSON")
    chat.set_defaults(func=_chat)

    compile_ = sub.add_parser("compile", help="print the llguidance grammar of a constraint, for vLLM or SGLang")
    group = compile_.add_mutually_exclusive_group()
    group.add_argument("--json-schema", metavar="FILE|JSON", help="JSON Schema file (or inline JSON)")
    group.add_argument("--regex", metavar="PAT", help="regex the whole answer must match")
    group.add_argument("--grammar", metavar="FILE|NAME", help="Lark grammar file, or a shipped grammar's name")
    group.add_argument("--json-object", action="store_true", help="any JSON object")
    compile_.add_argument("--tools", metavar="FILE|JSON", help="the request's `tools` list (file or inline JSON)")
    compile_.add_argument("--tool-choice", metavar="CHOICE", default=None,
                          help="auto, required, none, a tool's name, or the JSON object form")
    compile_.add_argument("--no-parallel-tool-calls", action="store_true", help="at most one tool call")
    compile_.add_argument("--pretty", action="store_true", help="allow newlines and indentation in JSON")
    compile_.add_argument("--close-objects", action="store_true", help="treat every object as additionalProperties: false")
    compile_.add_argument("--json", action="store_true",
                          help="print JSON: the grammar, and how to read tool calls back (and their system prompt)")
    compile_.set_defaults(func=_compile)

    serve = sub.add_parser("serve", help="serve the chat-completion API over HTTP")
    _model_options(serve, batching=True, several=True)
    serve.add_argument("--load-models", choices=("start", "first-use"), default="start",
                       help="load every model when the server starts, or each on its first request")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--api-key", action="append", default=[], help="accepted bearer key (repeatable; or env CONSTRAIN_API_KEYS)"
    )
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests that may wait for a place in the batch before 429")
    serve.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens accepted (and the default)")
    serve.add_argument("--max-request-bytes", type=int, default=4 * 1024 * 1024, help="larger bodies get 413")
    serve.add_argument("--cache-size", type=int, default=256, help="cached deterministic answers (0: off)")
    serve.add_argument("--allow-image-fetch", default="", metavar="DOMAINS",
                       help="comma-separated hosts whose images may be fetched by URL (subdomains too; '*': any); "
                            "default: none (data URLs only)")
    serve.add_argument("--allow-private-image-hosts", action="store_true",
                       help="let image URLs reach private, loopback and link-local addresses (off: refused)")
    serve.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                       help="image parts may name local files under DIR (default: no local files)")
    serve.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="a request body not in full after this gets 408")
    serve.add_argument("--shutdown-grace", type=float, default=DEFAULT_SHUTDOWN_GRACE_S, metavar="SECONDS",
                       help="on SIGTERM: seconds requests in flight get to finish (new ones get 503)")
    serve.add_argument("--max-compiles", type=int, default=None,
                       help="compiles running at once (default: half the CPU cores); more wait, until their deadline")
    add_serve_options(serve)
    serve.set_defaults(func=_serve)

    batch = sub.add_parser("batch", help="answer an OpenAI Batch API file (JSONL), resumable")
    batch.add_argument("input", help="input JSONL: {custom_id, method, url, body} per line")
    batch.add_argument("-o", "--output", required=True,
                       help="output JSONL (appended; custom_ids already there are skipped)")
    _model_options(batch, batching=True)
    batch.add_argument("--max-tokens-limit", type=int, default=4096,
                       help="max_tokens for requests that set none")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_batch_options(batch)
    batch.set_defaults(func=_batch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConstrainError as exc:
        where = f" [{exc.param}]" if exc.param else ""
        print(f"constrain: error{where}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
