"""Flattening person answers beside ``pd.json_normalize`` (issue 27), 8 KB and 1 KB answers, alternating.

    python -m benchmarks.flatten [--n 100000] [--pairs 3] [--size 8k|1k|both] [--before REV]

Answers are the sandbox's person records sized like Apollo's recordings (about 8 KB: eight entries of
employment history, each distinct; a full organization) or small (about 1 KB: no history, a four-key
organization), each decoded from JSON on its own (no shared objects), as they arrive. Each pair times
``to_pandas(flatten_people(records))`` then ``pd.json_normalize(records)``; the figures are the median of the
pairs' ratios and best to best, in CPU time and wall time, with the load average (the machine may be shared).
``--before REV`` also times ``apollo_frames/core/schema.py`` as it was at git revision REV in each pair.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

import pandas as pd

from apollo_frames.core import schema
from apollo_frames.sandbox import build_world


def sized(person: dict, size: str, i: int) -> dict:
    """``person`` grown to about 8 KB or cut to about 1 KB (one distinct answer per ``i``): the answers this
    benchmark flattens and ``benchmarks.anyframe`` stores."""
    p = json.loads(json.dumps(person))
    if size == "1k":
        org = p.get("organization") or {}
        p["organization"] = {k: org.get(k) for k in ("id", "name", "website_url", "primary_domain")}
        p["employment_history"] = []
    else:
        history = p.get("employment_history") or []
        p["employment_history"] = [{**h, "id": f"{i:08x}{n:04x}", "title": f"{h.get('title')} {n}"}
                                   for n in range(8) for h in history[:1] or [{"title": "Engineer"}]]
    return p


def answers(n: int, size: str) -> list[dict]:
    """``n`` distinct person answers of ``size``, each decoded from its own JSON text."""
    world = build_world(seed=8, n_orgs=math.ceil(n / 12 * 1.01), people_per_org=12)
    return [json.loads(json.dumps(sized(p, size, i))) for i, p in enumerate(world.people[:n])]


def schema_at(rev: str) -> ModuleType:
    """``apollo_frames/core/schema.py`` as it was at git revision ``rev``, loaded as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:apollo_frames/core/schema.py"],
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "schema_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("schema_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del out
    return wall, cpu


def bench(n: int, size: str, pairs: int, before: ModuleType | None = None) -> str:
    records = answers(n, size)
    kb = sum(len(json.dumps(r)) for r in records[:1000]) / min(n, 1000) / 1024
    ours, theirs, old = [], [], []
    loads = []
    for _ in range(pairs):
        loads.append(os.getloadavg()[0])
        ours.append(_timed(lambda: schema.to_pandas(schema.flatten_people(records))))
        theirs.append(_timed(lambda: pd.json_normalize(records)))
        if before is not None:
            old.append(_timed(lambda: before.to_pandas(before.flatten_people(records))))
    per_row = min(o[0] for o in ours) / n * 1e6, min(t[0] for t in theirs) / n * 1e6
    cells = [_ratios(theirs, ours, 0), _ratios(theirs, ours, 1)]
    cells.append(f"{_ratios(theirs, old, 0)}; before / after {_ratios(old, ours, 0)}" if old else "")
    return (f"| {size} ({kb:.1f} KB) | {n:,} | {per_row[0]:.1f} us / {per_row[1]:.1f} us | {' | '.join(cells)} "
            f"| {min(loads):.1f}-{max(loads):.1f} |")


def _ratios(num: list[tuple[float, float]], den: list[tuple[float, float]], k: int) -> str:
    """Median of the pairs' ratios / best to best (``k``: 0 wall, 1 CPU)."""
    ratios = [a[k] / b[k] for a, b in zip(num, den, strict=True)]
    return f"{statistics.median(ratios):.2f}x / {min(a[k] for a in num) / min(b[k] for b in den):.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--size", choices=["8k", "1k", "both"], default="both")
    parser.add_argument("--before", help="git revision whose schema.py is timed in each pair too")
    args = parser.parse_args(argv)
    before = schema_at(args.before) if args.before else None
    print("| answers | records | wall per row, best: flatten / json_normalize | json_normalize / flatten, wall: "
          "median of pairs / best to best | CPU: median / best | json_normalize / before; before / after (wall) "
          "| load |")
    print("|---|---|---|---|---|---|---|")
    for size in (["8k", "1k"] if args.size == "both" else [args.size]):
        print(bench(args.n, size, args.pairs, before), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
