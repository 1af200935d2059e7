"""End to end on the embedded model: constrain vs outlines vs xgrammar vs unconstrained.

Every system drives the *same* loaded transformers model object (``constrain.load()``)
with greedy decoding, on 30 fixed schemas with prompts (``e2e_schemas.json``), so that
the ratios measured in one run compare the constraint machinery, not the weights:

- ``constrain``: ``model.chat_completion(response_format=json_schema, temperature=0, stream=True)``;
- ``outlines``: ``outlines.Generator(outlines.from_transformers(hf, tok), JsonSchema(...))``;
- ``xgrammar``: ``hf.generate`` with ``xgrammar.contrib.hf.LogitsProcessor``;
- ``free_loop``: our decoding core, no constraint, exactly as many tokens as constrain produced;
- ``free_generate``: ``hf.generate(min_new_tokens=max_new_tokens=that count)``.

Output tokens are counted the same way for all: the tokens appended to the output,
EOS excluded (forced tokens count: they are output). Per (system, schema) the best time
of ``--repeat`` interleaved runs is kept (the CPU may be shared). Compile time is measured
apart and excluded from tokens/s; a warm-up run per system absorbs one-off JIT costs
(outlines' torch.compile kernel), reported as "first call".

    .venv/bin/python benchmarks/e2e.py --n 30 --repeat 2 --max-tokens 192 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, str(_ROOT))

SCHEMAS = Path(__file__).with_name("e2e_schemas.json")
SYSTEMS = ("constrain", "outlines", "xgrammar", "free_loop", "free_generate")
SYSTEM_PROMPT = "Answer with a JSON object only."


@dataclass
class Run:
    """One generation: what came out and how long it took."""

    text: str
    tokens: int
    seconds: float
    ttft: float
    forwards: int


@dataclass
class Result:
    """Best-of-repeats per schema for one system."""

    runs: dict[str, Run] = field(default_factory=dict)
    compile_s: dict[str, float] = field(default_factory=dict)
    valid: dict[str, bool] = field(default_factory=dict)
    first_call_s: float | None = None
    error: str | None = None

    def keep(self, name: str, run: Run) -> None:
        old = self.runs.get(name)
        if old is None or run.seconds < old.seconds:
            self.runs[name] = run


class ForwardCounter:
    """Counts forward passes of the model, whatever calls it (a module hook: same for all)."""

    def __init__(self, model: Any) -> None:
        self.count = 0
        self.last_end = 0.0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1
        self.last_end = time.perf_counter()


class TimingStreamer:
    """A transformers streamer: time of the first generated token, and the count (EOS excluded)."""

    def __init__(self, eos_ids: set[int]) -> None:
        self.eos_ids = eos_ids
        self.start = time.perf_counter()
        self.first: float | None = None
        self.calls = 0
        self.tokens = 0

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 1:  # generate() first puts the prompt
            return
        ids = [int(t) for t in value.reshape(-1).tolist()]
        if self.first is None:
            self.first = time.perf_counter()
        self.tokens += sum(1 for t in ids if t not in self.eos_ids)

    def end(self) -> None:
        pass


class _FreeText:
    """An unconstrained constraint blind to EOS, so that our loop runs exactly ``max_tokens`` steps.

    (The request API has no ``min_tokens``; this is the decode-level equivalent.)
    """

    def __init__(self, vocab_size: int) -> None:
        from types import SimpleNamespace

        self.vocab_size = vocab_size
        self.engine = SimpleNamespace(eos_token_id=-1, name="none")

    def matcher(self) -> None:
        return None


# --------------------------------------------------------------------------- systems


class Bench:
    def __init__(self, max_tokens: int) -> None:
        import torch

        import constrain

        self.torch = torch
        started = time.perf_counter()
        self.model = constrain.load(runtime="transformers")
        self.load_s = time.perf_counter() - started
        self.hf = self.model.hf_model
        self.tok = self.model.tokenizer
        self.max_tokens = max_tokens
        self.eos = set(self.model.eos_token_ids)
        self.counter = ForwardCounter(self.hf)
        self.setup_s: dict[str, float] = {}
        self._outlines: Any = None
        self._xgr_compiler: Any = None

    # prompts ---------------------------------------------------------------

    def messages(self, case: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": case["prompt"]}]

    def prompt_text(self, case: dict[str, Any]) -> str:
        from constrain.chat_template import render

        return render(self.tok, self.messages(case))

    def prompt_ids(self, case: dict[str, Any]) -> list[int]:
        return self.tok(self.prompt_text(case), add_special_tokens=False)["input_ids"]

    @staticmethod
    def response_format(case: dict[str, Any]) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": case["name"], "schema": case["schema"]}}

    # compile ---------------------------------------------------------------

    def compile(self, system: str, case: dict[str, Any]) -> tuple[Any, float]:
        """A fresh (uncached) compile for ``system``; returns (compiled, seconds)."""
        schema_text = json.dumps(case["schema"])
        if system == "constrain":
            # Cold: drop the model's compiled constraints so that the compile is measured, not the hit.
            self.model.compiler.clear()
            started = time.perf_counter()
            compiled = self.model.compile(self.response_format(case))
            return compiled, time.perf_counter() - started
        if system == "outlines":
            import outlines
            from outlines.types import JsonSchema

            if self._outlines is None:
                started = time.perf_counter()
                self._outlines = outlines.from_transformers(self.hf, self.tok)
                self.setup_s["outlines"] = time.perf_counter() - started
            started = time.perf_counter()
            # Compact JSON, like constrain's default (outlines' default allows optional spaces).
            generator = outlines.Generator(self._outlines, JsonSchema(schema_text, whitespace_pattern=""))
            return generator, time.perf_counter() - started
        if system == "xgrammar":
            import xgrammar as xgr

            if self._xgr_compiler is None:
                started = time.perf_counter()
                info = xgr.TokenizerInfo.from_huggingface(self.tok, vocab_size=self.model.vocab_size)
                self._xgr_compiler = xgr.GrammarCompiler(info, cache_enabled=False)
                self.setup_s["xgrammar"] = time.perf_counter() - started
            started = time.perf_counter()
            compiled = self._xgr_compiler.compile_json_schema(schema_text, any_whitespace=False, separators=(",", ":"))
            return compiled, time.perf_counter() - started
        return None, 0.0

    # generate --------------------------------------------------------------

    def generate(self, system: str, case: dict[str, Any], compiled: Any, n_tokens: int) -> Run:
        torch = self.torch
        before = self.counter.count
        if system == "constrain":
            started = time.perf_counter()
            first = None
            text: list[str] = []
            usage = None
            for chunk in self.model.chat_completion(
                self.messages(case), response_format=self.response_format(case), temperature=0,
                max_tokens=self.max_tokens, stream=True, stream_options={"include_usage": True},
            ):
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    # Forced text ('{"') streams before the prefill; TTFT is the first *model* token,
                    # as for the generate()-based systems: the first content after a forward pass.
                    if first is None and self.counter.count > before:
                        first = time.perf_counter()
                    text.append(chunk.choices[0].delta.content)
            seconds = time.perf_counter() - started
            assert usage is not None
            return Run("".join(text), usage.completion_tokens, seconds, (first or started) - started,
                       self.counter.count - before)
        if system == "free_loop":
            from constrain.decoding import DecodeJob, SamplingParams

            ids = self.prompt_ids(case)
            started = time.perf_counter()
            first = None
            out: list[int] = []
            job = DecodeJob(prompt_ids=ids, compiled=_FreeText(self.model.vocab_size),
                            params=SamplingParams(temperature=0.0), max_tokens=n_tokens, ignore_eos=True)
            for step in self.model.core.submit(job):
                if step.token_ids and first is None:
                    first = time.perf_counter()
                out.extend(step.token_ids)
            seconds = time.perf_counter() - started
            return Run(self.tok.decode(out), len(out), seconds, (first or started) - started,
                       self.counter.count - before)
        # The generate()-based systems.
        streamer = TimingStreamer(self.eos)
        common: dict[str, Any] = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                                      streamer=streamer, pad_token_id=self.tok.eos_token_id)
        if system == "outlines":
            streamer.start = time.perf_counter()
            text_out = compiled(self.prompt_text(case), max_new_tokens=self.max_tokens, **common)
            seconds = time.perf_counter() - streamer.start
        else:
            ids = torch.tensor([self.prompt_ids(case)])
            kwargs = dict(common)
            if system == "xgrammar":
                import xgrammar as xgr

                kwargs.update(max_new_tokens=self.max_tokens, logits_processor=[xgr.contrib.hf.LogitsProcessor(compiled)])
            else:  # free_generate
                kwargs.update(max_new_tokens=n_tokens, min_new_tokens=n_tokens)
            streamer.start = time.perf_counter()
            with torch.inference_mode():
                output = self.hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
            seconds = time.perf_counter() - streamer.start
            text_out = self.tok.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
        first = streamer.first or streamer.start
        return Run(text_out, streamer.tokens, seconds, first - streamer.start, self.counter.count - before)


def is_valid(schema: dict[str, Any], text: str) -> bool:
    import jsonschema

    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False
    return jsonschema.Draft202012Validator(schema).is_valid(value)


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] if ordered else float("nan")


def summarise(results: dict[str, Result], cases: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    rows = []
    summary: dict[str, Any] = {}
    for system, result in results.items():
        runs = [result.runs[c["name"]] for c in cases if c["name"] in result.runs]
        if not runs:
            continue
        tokens = sum(r.tokens for r in runs)
        seconds = sum(r.seconds for r in runs)
        decode_s = sum(r.seconds - r.ttft for r in runs)
        forwards = sum(r.forwards for r in runs)
        entry = {
            "schemas": len(runs),
            "tokens": tokens,
            "tok_s": tokens / seconds,
            "decode_tok_s": (tokens - len(runs)) / decode_s if decode_s > 0 else float("nan"),
            "forwards_per_token": forwards / tokens,
            "ttft_p50_ms": 1e3 * statistics.median(r.ttft for r in runs),
            "compile_p50_ms": 1e3 * statistics.median(result.compile_s.values()) if result.compile_s else None,
            "compile_max_ms": 1e3 * max(result.compile_s.values()) if result.compile_s else None,
            "valid": sum(result.valid.values()) if result.valid else None,
            "first_call_s": result.first_call_s,
            "error": result.error,
        }
        summary[system] = entry
        rows.append((system, entry))
    base = summary.get("free_loop", {}).get("tok_s")
    lines = [
        "| system | schemas | output tokens | tok/s | vs free_loop | decode tok/s | forwards/token "
        "| TTFT p50 ms | compile p50 ms | compile max ms | schema-valid | first call s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, e in rows:
        ratio = f"{e['tok_s'] / base:.2f}x" if base else "-"
        compile_p50 = f"{e['compile_p50_ms']:.1f}" if e["compile_p50_ms"] is not None else "-"
        compile_max = f"{e['compile_max_ms']:.1f}" if e["compile_max_ms"] is not None else "-"
        valid = f"{e['valid']}/{e['schemas']}" if e["valid"] is not None else "-"
        first = f"{e['first_call_s']:.1f}" if e["first_call_s"] is not None else "-"
        lines.append(
            f"| {system} | {e['schemas']} | {e['tokens']} | {e['tok_s']:.1f} | {ratio} | {e['decode_tok_s']:.1f} "
            f"| {e['forwards_per_token']:.2f} | {e['ttft_p50_ms']:.0f} | {compile_p50} | {compile_max} | {valid} | {first} |"
        )
    if "constrain" in summary:
        c = summary["constrain"]["tok_s"]
        for other in ("free_loop", "free_generate", "outlines", "xgrammar"):
            if other in summary:
                lines.append(f"\nconstrain / {other} tok/s: **{c / summary[other]['tok_s']:.2f}x**")
    return "\n".join(lines), summary


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="how many of the 30 schemas")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--only", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved timing runs; the best is kept")
    parser.add_argument("--schemas", default=str(SCHEMAS))
    parser.add_argument("--free-tokens", type=int, default=48,
                        help="token count for the free_* systems when constrain is not run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default); 1 is steadier on a shared CPU")
    parser.add_argument("--out", help="write the summary and the outputs as JSON")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s) {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for system, module in (("outlines", "outlines"), ("xgrammar", "xgrammar")):
        if system in systems and importlib.util.find_spec(module) is None:
            print(f"# skipping {system}: not installed (pip install --no-deps {module}, then its light deps)")
            systems.remove(system)

    cases = json.loads(Path(args.schemas).read_text())[: args.n]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bench = Bench(args.max_tokens)
    torch = bench.torch
    print(f"# e2e: {len(cases)} schemas, systems {', '.join(systems)}, repeat {args.repeat}, "
          f"max_tokens {args.max_tokens}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"model load {bench.load_s:.1f}s", flush=True)

    results = {s: Result() for s in systems}
    compiled: dict[tuple[str, str], Any] = {}
    # Compile everything first (cold, per schema), then a warm-up call per system.
    for system in systems:
        for case in cases:
            try:
                obj, seconds = bench.compile(system, case)
            except Exception as exc:  # a peer that cannot compile a schema: recorded, not fatal
                results[system].valid[case["name"]] = False
                print(f"  {system} {case['name']}: compile failed: {type(exc).__name__}: {exc}"[:300], flush=True)
                continue
            compiled[(system, case["name"])] = obj
            if system in ("constrain", "outlines", "xgrammar"):
                results[system].compile_s[case["name"]] = seconds
    cache_hit_us: list[float] = []
    if "constrain" in systems:
        # Re-compile into the cache (the cold loop cleared it) so that generation sees a hit,
        # and time the hit itself (best of 20 per schema): what a repeated request pays.
        for case in cases:
            fmt = bench.response_format(case)
            first = bench.model.compile(fmt)
            best = float("inf")
            for _ in range(20):
                started = time.perf_counter()
                again = bench.model.compile(json.loads(json.dumps(fmt)))
                best = min(best, time.perf_counter() - started)
            assert again is first, "a repeated response_format must hit the compiled-constraint cache"
            cache_hit_us.append(1e6 * best)
    for system in systems:
        case = cases[0]
        if (system, case["name"]) not in compiled and system not in ("free_loop", "free_generate"):
            continue
        started = time.perf_counter()
        try:
            bench.generate(system, case, compiled.get((system, case["name"])), 8)
        except Exception as exc:
            results[system].error = f"{type(exc).__name__}: {exc}"[:300]
            print(f"  {system}: warm-up failed: {results[system].error}", flush=True)
        results[system].first_call_s = time.perf_counter() - started

    targets: dict[str, int] = {}
    for rep in range(args.repeat):
        for index, case in enumerate(cases):
            name = case["name"]
            for system in systems:
                if results[system].error:
                    continue
                if system in ("free_loop", "free_generate"):
                    n = targets.get(name, args.free_tokens)
                elif (system, name) not in compiled:
                    continue
                else:
                    n = args.max_tokens
                try:
                    run = bench.generate(system, case, compiled.get((system, name)), n)
                except Exception as exc:
                    print(f"  {system} {name}: {type(exc).__name__}: {exc}"[:300], flush=True)
                    results[system].valid[name] = False
                    continue
                if system == "constrain" and name not in targets:
                    targets[name] = max(1, run.tokens)
                results[system].keep(name, run)
                if system in ("constrain", "outlines", "xgrammar"):
                    results[system].valid[name] = is_valid(case["schema"], run.text)
            done = {s: results[s].runs.get(name) for s in systems}
            print(f"  [{rep + 1}/{args.repeat}] {index + 1:2d} {name:14s} "
                  + " ".join(f"{s}={r.tokens}t/{r.seconds:.2f}s" for s, r in done.items() if r), flush=True)

    table, summary = summarise(results, cases)
    print()
    print(table)
    if cache_hit_us:
        print(f"\nconstrain compiled-constraint cache hit: p50 {statistics.median(cache_hit_us):.1f} µs, "
              f"max {max(cache_hit_us):.1f} µs (target < 100 µs)")
    if bench.setup_s:
        print("\nper-tokenizer setup (once): " + ", ".join(f"{k} {v:.2f}s" for k, v in bench.setup_s.items()))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "summary": summary,
            "cache_hit_us": cache_hit_us,
            "setup_s": bench.setup_s,
            "outputs": {s: {k: r.text for k, r in res.runs.items()} for s, res in results.items()},
            "tokens": {s: {k: r.tokens for k, r in res.runs.items()} for s, res in results.items()},
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
