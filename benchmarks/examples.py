"""Schema-valid test data: ``constrain.testing.examples`` against hypothesis-jsonschema's ``from_schema``.

For every MaskBench schema (or a seeded sample): draw 10 instances with each, within ``--timeout``
seconds in all (compile or strategy building included), and check every instance with plain
``jsonschema`` (the schema's ``$schema`` dialect, 2020-12 by default). A schema counts as a success
when 10 instances came back in time and all are valid. The peer runs in a worker process that is
killed and replaced when it overruns (Hypothesis can search for a long time). Then
``counterexamples(schema, n=5)`` on each schema where ours succeeded: the share that ``jsonschema``
indeed rejects.

    # the peer, in its own interpreter: hypothesis-jsonschema 0.23.1 fails on Hypothesis 6.170 (`many.more`)
    python3.11 -m venv ../peer-venv && ../peer-venv/bin/pip install hypothesis-jsonschema==0.23.1 hypothesis==6.98.18
    nice .venv/bin/python benchmarks/examples.py --data ../shared/data/maskbench.jsonl.gz --limit 2500 --seed 0
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import random
import select
import subprocess
import sys
import time
import warnings
from collections import Counter
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, _ROOT)


def _peer_worker() -> None:
    """Child process (the peer's interpreter): one JSON line in (schema, n), one JSON line out."""
    warnings.simplefilter("ignore")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis_jsonschema import from_schema

    for line in sys.stdin:
        schema, n = json.loads(line)
        start = time.perf_counter()
        values: list[Any] = []
        try:
            strategy = from_schema(schema)

            @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def collect(value: Any) -> None:
                values.append(value)  # noqa: B023 - collect runs within this iteration only

            rounds = 0
            while len(values) < n and rounds < 20:  # Hypothesis may stop early on a small space
                collect()
                rounds += 1
            reply = ["ok", values[:n], time.perf_counter() - start]
        except BaseException as exc:  # noqa: B036 - any failure of the peer is its result
            reply = ["error", f"{type(exc).__name__}: {str(exc)[:200]}", time.perf_counter() - start]
        sys.stdout.write(json.dumps(reply, default=repr) + "\n")
        sys.stdout.flush()


class Peer:
    """A hypothesis-jsonschema worker process (its own interpreter) with a hard time limit per schema."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([self.python, os.path.abspath(__file__), "--peer-worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self._ask({"type": "integer"}, 1, 120.0)  # imports, outside any timed schema

    def _ask(self, schema: Any, n: int, timeout: float) -> Any:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([schema, n]) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        try:
            return json.loads(line)
        except ValueError:  # the worker died (memory, a crash in the peer): its result is an error
            return ["crash", f"worker ended: {line[:100]!r}", timeout]

    def draw(self, schema: Any, n: int, timeout: float) -> tuple[str, Any, float]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        start = time.perf_counter()
        reply = self._ask(schema, n, timeout + 0.25)
        if reply is not None:
            if reply[0] != "ok":  # a fresh worker for the next schema: no state left from a failure
                self.close()
                self.proc = None
            return reply[0], reply[1], reply[2]
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        return "timeout", None, time.perf_counter() - start

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _validator(schema: Any) -> Any:
    from jsonschema.validators import Draft202012Validator, validator_for

    return validator_for(schema, default=Draft202012Validator)(schema)


def _summary(done: int, rows: list[Any], status: dict[str, Counter[str]], totals: dict[str, list[Any]],
             counter: dict[str, Any], sampler: Any, with_peer: bool, started: float, args: Any) -> dict[str, Any]:
    peer = with_peer or None
    n_rows = done
    accepted = n_rows - status["constrain"]["unsupported"]
    summary = {
        "schemas": n_rows,
        "compile_accepts": accepted,
        "constrain_ok": status["constrain"]["ok"],
        "constrain_ok_share_of_accepted": status["constrain"]["ok"] / max(1, accepted),
        "constrain_ok_share_overall": status["constrain"]["ok"] / max(1, n_rows),
        "peer_ok_share_overall": status["peer"]["ok"] / max(1, n_rows) if peer is not None else None,
        "constrain_instances_per_s": totals["constrain"][0] / max(1e-9, totals["constrain"][1]),
        "peer_instances_per_s": totals["peer"][0] / max(1e-9, totals["peer"][1]) if peer is not None else None,
        "constrain_invalid_instances": totals["constrain"][2],
        "peer_invalid_instances": totals["peer"][2],
        "constrain_status": dict(status["constrain"]),
        "peer_status": dict(status["peer"]),
        "sampler_dropped_walks": sampler.dropped,
        "counterexamples": {"schemas": counter["schemas"], "returned": counter["returned"],
                            "rejected_by_jsonschema": counter["rejected"],
                            "keywords": dict(counter["keywords"].most_common())},
        "wall_s": round(time.time() - started, 1),
        "args": vars(args),
    }
    summary["complete"] = done == len(rows)
    return summary


def _write(path: str, summary: dict[str, Any], per_schema: list[Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"summary": summary, "schemas": per_schema}, fh, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(_ROOT, "..", "shared", "data", "maskbench.jsonl.gz"))
    parser.add_argument("--limit", type=int, default=None, help="a seeded random sample of this many schemas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per schema for 10 instances")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--peer-python", default=os.path.join(_ROOT, "..", "peer-venv", "bin", "python"),
                        help="an interpreter with hypothesis-jsonschema and a Hypothesis it supports")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "out", "examples.json"))
    args = parser.parse_args(argv)
    if args.peer_worker:
        _peer_worker()
        return 0
    warnings.simplefilter("ignore")

    with gzip.open(args.data, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    if args.limit is not None and args.limit < len(rows):
        rows = random.Random(args.seed).sample(rows, args.limit)

    from constrain.errors import CompileTimeoutError, ConstrainError
    from constrain.testing import ExampleSampler, counterexamples

    peer = None if args.no_peer else Peer(args.peer_python)
    sampler = ExampleSampler()
    sampler.examples({"type": "integer"}, 1)  # tokenizer and vocabulary tables, outside the timings
    status: dict[str, Counter[str]] = {"constrain": Counter(), "peer": Counter()}
    totals = {"constrain": [0, 0.0, 0], "peer": [0, 0.0, 0]}  # valid instances, seconds, invalid instances
    counter = {"returned": 0, "rejected": 0, "schemas": 0, "keywords": Counter[str]()}
    per_schema = []
    started = time.time()
    for index, row in enumerate(rows):
        schema = row["schema"]
        validator = _validator(schema)
        record: dict[str, Any] = {"name": row.get("name")}
        # ours
        t0 = time.perf_counter()
        try:
            values = sampler.examples(schema, args.n, seed=index, timeout_s=args.timeout)
            elapsed = time.perf_counter() - t0
            invalid = sum(not validator.is_valid(v) for v in values)
            ok = len(values) == args.n and invalid == 0 and elapsed <= args.timeout
            outcome = "ok" if ok else "invalid" if invalid else "slow"
            totals["constrain"][0] += len(values) - invalid
            totals["constrain"][2] += invalid
        except CompileTimeoutError:
            elapsed, outcome = time.perf_counter() - t0, "timeout"
        except ConstrainError:
            elapsed, outcome = time.perf_counter() - t0, "unsupported"
        except TimeoutError:
            elapsed, outcome = time.perf_counter() - t0, "timeout"
        except Exception as exc:  # noqa: BLE001 - a failure is a result here
            elapsed, outcome = time.perf_counter() - t0, f"error:{type(exc).__name__}"
        totals["constrain"][1] += elapsed
        status["constrain"][outcome] += 1
        record["constrain"] = [outcome, round(elapsed, 4)]
        # counterexamples, untimed
        if outcome == "ok":
            try:
                found = counterexamples(schema, n=5, seed=index, sampler=sampler)
                counter["schemas"] += 1
                counter["returned"] += len(found)
                counter["rejected"] += sum(not validator.is_valid(c.instance) for c in found)
                counter["keywords"].update(c.keyword for c in found)
            except Exception as exc:  # noqa: BLE001
                record["counterexamples"] = f"error:{type(exc).__name__}: {exc}"[:200]
        # the peer
        if peer is not None:
            kind, payload, seconds = peer.draw(schema, args.n, args.timeout)
            if kind == "ok":
                invalid = sum(not validator.is_valid(v) for v in payload)
                ok = len(payload) == args.n and invalid == 0 and seconds <= args.timeout
                outcome = "ok" if ok else "invalid" if invalid else "slow" if seconds > args.timeout else "few"
                totals["peer"][0] += len(payload) - invalid
                totals["peer"][2] += invalid
            else:
                outcome = kind if kind in ("timeout", "crash") else "error"
                record["peer_error"] = payload
            totals["peer"][1] += min(seconds, args.timeout + 0.25)
            status["peer"][outcome] += 1
            record["peer"] = [outcome, round(seconds, 4)]
        per_schema.append(record)
        if (index + 1) % 500 == 0:  # a partial result on disk, should the run be cut short
            _write(args.out, _summary(index + 1, rows, status, totals, counter, sampler, peer is not None, started,
                                      args), per_schema)
        if (index + 1) % 50 == 0:
            print(f"{index + 1}/{len(rows)} {time.time() - started:.0f}s constrain={dict(status['constrain'])} "
                  f"peer={dict(status['peer'])}", file=sys.stderr, flush=True)
    if peer is not None:
        peer.close()
    summary = _summary(len(rows), rows, status, totals, counter, sampler, peer is not None, started, args)
    print(json.dumps(summary, indent=2))
    _write(args.out, summary, per_schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
