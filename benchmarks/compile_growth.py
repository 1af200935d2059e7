"""How compile time grows with a schema's size: nesting, properties, enums, unions, `$ref` chains,
patterns, numbers. Each family is compiled at doubling sizes (no compile deadline, fresh text each
time so that no cache answers); reported: ms per size and the growth exponent between the
smallest and the largest size (1: linear, 2: quadratic). Sizes past a limit of ``constrain.schema.limits`` report the limit error
and its time instead.

    .venv/bin/python benchmarks/compile_growth.py --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, str(_ROOT))


def _nested(depth: int, salt: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "integer", "minimum": salt}
    for _ in range(depth):
        node = {"type": "object", "properties": {"a": node}, "required": ["a"]}
    return node


def _arrays(depth: int, salt: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "integer", "minimum": salt}
    for _ in range(depth):
        node = {"type": "array", "items": node, "maxItems": 3}
    return node


def _refs(length: int, salt: int) -> dict[str, Any]:
    defs: dict[str, Any] = {f"d{i}": {"type": "object", "properties": {"n": {"$ref": f"#/$defs/d{i + 1}"}}}
                            for i in range(length)}
    defs[f"d{length}"] = {"type": "integer", "minimum": salt}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


FAMILIES: dict[str, tuple[Callable[[int, int], Any], list[int]]] = {
    "nested objects (depth)": (_nested, [4, 8, 16, 32, 48]),
    "nested arrays (depth)": (_arrays, [4, 8, 16, 32, 64]),
    "properties": (lambda n, s: {"type": "object", "properties": {f"p{i}_{s}": {"type": "integer"}
                                                                  for i in range(n)}}, [128, 256, 512, 1024, 2048]),
    "enum values": (lambda n, s: {"enum": [f"v{i}-{s}" for i in range(n)]}, [256, 512, 1024, 2048, 4096]),
    "anyOf branches": (lambda n, s: {"anyOf": [{"type": "object", "properties": {f"k{i}": {"const": i + s}},
                                                "required": [f"k{i}"]} for i in range(n)]}, [4, 8, 16, 32, 64]),
    "oneOf consts": (lambda n, s: {"oneOf": [{"const": f"v{i}-{s}"} for i in range(n)]}, [64, 128, 256, 512, 1024]),
    "allOf parts": (lambda n, s: {"allOf": [{"type": "object", "properties": {f"k{i}": {"minimum": s}}}
                                            for i in range(n)]}, [16, 32, 64, 128, 256]),
    "$ref chain": (_refs, [4, 8, 16, 32, 60]),
    "patternProperties": (lambda n, s: {"type": "object", "patternProperties": {
        f"^p{i}x{s}[a-z]+$": {"type": "integer"} for i in range(n)}}, [4, 8, 16, 32, 64]),
    "pattern repetition {n}": (lambda n, s: {"type": "string", "pattern": f"^(ab{{1,{n}}}){{1,3}}x{s}$"},
                               [16, 64, 256, 1024, 4096]),
    "integer digits": (lambda n, s: {"type": "integer", "minimum": s, "maximum": int("9" * n)},
                       [2, 4, 8, 16, 18]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma list of family names")
    parser.add_argument("--out", default="benchmarks/out/compile_growth.json")
    args = parser.parse_args()

    import constrain
    from constrain.constraints import compile_constraint
    from constrain.errors import ConstrainError

    tokenizer = constrain.load().tokenizer
    salt = 0
    report: dict[str, Any] = {}
    for family, (build, sizes) in FAMILIES.items():
        if args.only and family not in args.only.split(","):
            continue
        rows = []
        for size in sizes:
            times, outcome = [], "ok"
            for _ in range(args.repeat):
                salt += 1
                schema = build(size, salt)
                start = time.perf_counter()
                try:
                    compile_constraint({"type": "json", "value": schema}, tokenizer, compile_timeout_s=None)
                except ConstrainError as exc:
                    outcome = f"{type(exc).__name__}: {exc.code or ''}"
                times.append(time.perf_counter() - start)
            rows.append({"size": size, "ms": 1000 * statistics.median(times), "outcome": outcome,
                         "bytes": len(json.dumps(build(size, 0)))})
        ok = [r for r in rows if r["outcome"] == "ok" and r["ms"] > 0]
        # Growth exponent between the smallest and largest size that compiled: 1 is linear, 2 quadratic.
        exponent = (math.log(ok[-1]["ms"] / ok[0]["ms"]) / math.log(ok[-1]["size"] / ok[0]["size"])
                    if len(ok) >= 2 else None)
        report[family] = {"rows": rows, "exponent": exponent}
        cells = "  ".join(f"{r['size']}: {r['ms']:.1f} ms" + ("" if r["outcome"] == "ok" else f" ({r['outcome']})")
                          for r in rows)
        shown = f"{exponent:.2f}" if exponent is not None else "-"
        print(f"{family:24s} exponent {shown:>5s}  {cells}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
