"""Export agreement on MaskBench: does an exported grammar, compiled by llguidance alone, mask
exactly as constrain does?

For each sampled schema, ``{"type": "json", "value": schema}`` goes through both
``constrain.compile_constraint`` (constrain's engine, matcher and all) and
``constrain.export_constraint``. The exported Lark grammar is then compiled the way vLLM's guidance
backend and SGLang's llguidance backend compile it (``llguidance.grammar_from("grammar", ...)``,
``llguidance.LLMatcher``) with no constrain code in the loop, and every test instance is walked
token by token through both matchers in lockstep: the two masks must be equal at every step
(including the last, where EOS is allowed or not), so accept/reject agrees. Each instance is
walked as MaskBench serialises it (compact) and, where it differs, with its keys in the order the
schema declares them (``key_order.py``), so that valid instances are accepted too, not only
rejected for their key order.

A schema that constrain compiles but that needs its runtime matcher (``uniqueItems`` over
unbounded items, ``contains`` counts, values checked when they end) must be refused by the export with an
``UnsupportedSchemaError`` (``code: not_exportable``) whose ``param`` ends with the keyword.
A schema constrain refuses must be refused by the export too.

    .venv/bin/python benchmarks/export_agreement.py --data ../shared/data/maskbench.jsonl.gz --limit 500
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import random
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, os.path.dirname(_HERE))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from key_order import declared_order  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "shared", "data", "maskbench.jsonl.gz")


def load_records(path: str) -> list[dict[str, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def split_of(name: str) -> str:
    """MaskBench split: the name before ``---``, or before a trailing ``_<n>``."""
    return name.split("---")[0] if "---" in name else re.sub(r"_\d+$", "", name)


def sample(records: list[dict[str, Any]], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` records, every split once before any twice (round robin, seeded within splits)."""
    by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_split[split_of(record["name"])].append(record)
    rng = random.Random(seed)
    for rows in by_split.values():
        rng.shuffle(rows)
    picked: list[dict[str, Any]] = []
    depth = 0
    while len(picked) < min(count, len(records)):
        for split in sorted(by_split):
            if depth < len(by_split[split]) and len(picked) < count:
                picked.append(by_split[split][depth])
        depth += 1
    return picked


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Figures:
    """What the run found; ``disagreements`` must stay empty."""

    schemas: int = 0
    exported: int = 0
    refused_runtime: Counter[str] = field(default_factory=Counter)  # by keyword: constrain compiles, export refuses
    refused_both: Counter[str] = field(default_factory=Counter)  # by error class: constrain refuses too
    instances: int = 0
    texts: int = 0
    accepted: int = 0
    rejected: int = 0
    masks: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "schemas": self.schemas, "exported": self.exported,
            "refused_runtime_only": dict(self.refused_runtime.most_common()),
            "refused_by_both": dict(self.refused_both.most_common()),
            "instances": self.instances, "texts_walked": self.texts, "texts_agreeing": self.texts - len(
                [d for d in self.disagreements if d["kind"] == "mask"]),
            "accepted_by_both": self.accepted, "rejected_by_both": self.rejected, "masks_compared": self.masks,
            "disagreements": len(self.disagreements), "seconds": round(self.seconds, 1),
        }


class Harness:
    """One tokenizer, two paths: constrain's compile_constraint, and llguidance on the exported grammar."""

    def __init__(self, tokenizer: Any) -> None:
        import llguidance
        import llguidance.hf

        from constrain.constraints import get_engine

        self.tokenizer = tokenizer
        self.llguidance = llguidance
        # The server side: its own llguidance tokenizer, built as vLLM and SGLang build theirs.
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        self.vocab_size = get_engine("llguidance", tokenizer).vocab_size
        assert self.vocab_size == self.ll_tokenizer.vocab_size
        words = (self.vocab_size + 31) // 32
        self.ours_bits = np.zeros(words, dtype=np.int32)
        self.theirs_bits = np.zeros(words, dtype=np.int32)
        self.eos = self.ll_tokenizer.eos_token

    def server_matcher(self, grammar: str) -> Any:
        """The exported grammar compiled as a server compiles it: no constrain code involved."""
        serialized = self.llguidance.grammar_from("grammar", grammar)
        return self.llguidance.LLMatcher(self.ll_tokenizer, serialized, log_level=0)

    def walk(self, ours: Any, theirs: Any, text: str) -> tuple[bool | None, int]:
        """Both matchers over ``text``'s tokens: (accepted, masks compared), or (None, step) at the
        first step where the masks differ."""
        tokens = self.tokenizer.encode(text, add_special_tokens=False)
        for step, token in enumerate([*tokens, None]):
            ours.fill_bitmask(self.ours_bits)
            theirs.unsafe_compute_mask_ptr(self.theirs_bits.ctypes.data, self.theirs_bits.nbytes)
            if not np.array_equal(self.ours_bits, self.theirs_bits):
                return None, step
            if token is None:  # the end: EOS allowed exactly when both accept
                allowed = bool((int(self.ours_bits[self.eos >> 5]) >> (self.eos & 31)) & 1)
                if allowed != ours.is_accepting() or allowed != theirs.is_accepting():
                    return None, step
                return allowed, step + 1
            if not (int(self.ours_bits[token >> 5]) >> (token & 31)) & 1:
                return False, step + 1
            if not ours.consume(token) or not theirs.consume_token(token):
                return None, step
        raise AssertionError("unreachable")


def check_record(harness: Harness, record: dict[str, Any], figures: Figures) -> None:
    from constrain import compile_constraint, export_constraint
    from constrain.constraints import engine_grammar
    from constrain.errors import ConstrainError, UnsupportedSchemaError
    from constrain.export import NOT_EXPORTABLE

    name, schema = record["name"], record["schema"]
    response_format = {"type": "json", "value": schema}
    figures.schemas += 1

    def disagree(kind: str, **detail: Any) -> None:
        figures.disagreements.append({"schema": name, "kind": kind, **detail})

    ours_error: ConstrainError | None = None
    try:
        compiled = compile_constraint(response_format, harness.tokenizer, compile_timeout_s=None)
    except ConstrainError as exc:
        ours_error = exc
    try:
        exported = export_constraint(response_format)
    except ConstrainError as exc:
        if ours_error is not None:
            figures.refused_both[type(ours_error).__name__] += 1
            if type(exc) is not type(ours_error):
                disagree("refusal_class", ours=type(ours_error).__name__, export=type(exc).__name__)
            return
        runtime = bool(engine_grammar(compiled.constraint).rules)
        clear = (isinstance(exc, UnsupportedSchemaError) and exc.code == NOT_EXPORTABLE and bool(exc.keyword)
                 and (exc.param or "").endswith("." + str(exc.keyword)))
        if not runtime or not clear:
            disagree("export_refused", error=f"{type(exc).__name__} [{exc.param}]: {exc.message[:300]}")
        figures.refused_runtime[str(exc.keyword)] += 1
        return
    if ours_error is not None:
        disagree("exported_a_refused_schema", ours=f"{type(ours_error).__name__}: {ours_error.message[:300]}")
        return
    figures.exported += 1
    start = harness.server_matcher(exported.grammar)
    if start.is_error():
        disagree("server_compile", error=start.get_error()[:300])
        return
    for index, test in enumerate(record.get("tests", [])):
        figures.instances += 1
        texts = [compact(test["data"])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ordered = compact(declared_order(schema, test["data"]))
        if ordered != texts[0]:
            texts.append(ordered)
        for text in texts:
            figures.texts += 1
            ours = compiled.matcher()
            assert ours is not None
            accepted, steps = harness.walk(ours, start.deep_copy(), text)
            figures.masks += steps
            if accepted is None:
                disagree("mask", test=index, step=steps, text=text[:200])
            elif accepted:
                figures.accepted += 1
            else:
                figures.rejected += 1


def run(records: list[dict[str, Any]], harness: Harness, *, progress: bool = False) -> Figures:
    figures = Figures()
    began = time.perf_counter()
    for number, record in enumerate(records, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown formats: SchemaWarning, on both paths alike
            try:
                check_record(harness, record, figures)
            except Exception as exc:  # noqa: BLE001 - anything but a constrain error is a finding, not the end
                figures.disagreements.append({"schema": record["name"], "kind": "crash",
                                              "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        if progress and number % 50 == 0:
            print(f"  {number}/{len(records)} schemas, {time.perf_counter() - began:.0f} s", file=sys.stderr)
    figures.seconds = time.perf_counter() - began
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="MaskBench JSONL(.gz) (default: ../shared/data/)")
    parser.add_argument("--limit", type=int, default=500, help="schemas sampled (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from constrain.loading import load_tokenizer

    records = load_records(args.data)
    picked = sample(records, args.limit, args.seed) if args.limit else records
    figures = run(picked, Harness(load_tokenizer()), progress=True)
    summary = figures.summary()
    if args.json:
        print(json.dumps({**summary, "disagreement_details": figures.disagreements}, indent=1))
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value}")
        for item in figures.disagreements[:20]:
            print("DISAGREEMENT", item)
    return 1 if figures.disagreements else 0


if __name__ == "__main__":
    raise SystemExit(main())
