"""Cached re-runs of any frame (issue 27): each beside ``pd.read_parquet`` of its own output, alternating.

    python -m benchmarks.anyframe [--n 100000] [--pairs 3] [--size 8k|1k|both]
    python -m benchmarks.anyframe --stream 200000 [--size 1k]   # a shuffled file through enrich_parquet

A store holds the answers of ``n`` distinct people (written straight into it, then flattened by one first
run). Four frames are re-run from it, each timed against reading its own output from Parquet, in pairs
(the machine may be shared: compare the ratios, and the load average printed with them):

* the same frame again; a shuffled copy; a random 30 % subset in another order;
* the same frame after other frames were enriched on the store (new people, and a subset read).

Answers are shaped like the sandbox's person records, sized like Apollo's recordings (about 8 KB: a longer
employment history) or small (about 1 KB: no history, a short organization).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

import apollo_frames
from apollo_frames.sandbox import Sandbox, SandboxConfig, build_world

from .flatten import sized
from .run import sandbox_client


def filled_store(tmp: Path, n: int, size: str) -> tuple[Path, pd.DataFrame, list[pd.DataFrame]]:
    """A store with ``n + n // 5`` sized answers written straight in; the frame of the first ``n``, and the rest."""
    from apollo_frames.ops.people import people_job

    total = n + n // 5
    world = build_world(seed=8, n_orgs=math.ceil(total / 12 * 1.15), people_per_org=12)
    people = [p for p in world.people if p.get("email")][:total]
    del world
    frame = pd.DataFrame({"email": [p["email"] for p in people], "first_name": [p["first_name"] for p in people],
                          "last_name": [p["last_name"] for p in people]})
    cache_dir = tmp / f"store-{size}"
    with sandbox_client(Sandbox(SandboxConfig(n_orgs=10)), cache_dir) as client:
        prepared, op, options = people_job(frame)
        keys = [client.cache.key(op.endpoint, identity, options) for identity in prepared.identities]
        for start in range(0, total, 1000):
            answers = [sized(p, size, start + i) for i, p in enumerate(people[start:start + 1000])]
            client.cache.set_many(dict(zip(keys[start:start + 1000], answers, strict=True)), ttl=None)
    sample = json.dumps(sized(people[0], size, 0))
    print(f"{size}: {total:,} answers of about {len(sample) / 1024:.1f} KB stored")
    return cache_dir, frame.iloc[:n].reset_index(drop=True), [frame.iloc[n:].reset_index(drop=True)]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _pairs(client, frame: pd.DataFrame, path: Path, pairs: int) -> tuple[float, float, list[float]]:
    """Best enrich time, best read time, and each pair's ratio (enrich then read, alternating)."""
    apollo_frames.enrich_people(frame, client=client, progress=False).to_parquet(path)
    runs, reads = [], []
    for _ in range(pairs):
        out, run_s = _timed(lambda: apollo_frames.enrich_people(frame, client=client, progress=False))
        assert out.attrs["apollo"]["api_calls"] == 0
        del out
        _, read_s = _timed(lambda: pd.read_parquet(path))
        runs.append(run_s)
        reads.append(read_s)
    return min(runs), min(reads), sorted(r / q for r, q in zip(runs, reads, strict=True))


def bench(n: int, size: str, pairs: int, tmp: Path) -> list[str]:
    cache_dir, frame, (others,) = filled_store(tmp, n, size)
    sb = Sandbox(SandboxConfig(n_orgs=10))  # answers nothing useful: every row must come from the store
    lines = []
    with sandbox_client(sb, cache_dir) as client:
        _, first_s = _timed(lambda: apollo_frames.enrich_people(frame, client=client, progress=False))
        lines.append(f"| {size} | first re-run (flattens the raw answers, keeps copies) | {first_s:.2f} s | | |")
        cases = [("the same frame", frame),
                 ("a shuffled copy", frame.sample(frac=1.0, random_state=1).reset_index(drop=True)),
                 ("a 30 % subset, another order", frame.sample(frac=0.3, random_state=2).reset_index(drop=True))]
        for name, f in cases:
            lines.append(_line(size, name, *_pairs(client, f, tmp / "out.parquet", pairs)))
        apollo_frames.enrich_people(others, client=client, progress=False)  # other people, flattened and kept
        apollo_frames.enrich_people(pd.concat([others, frame.iloc[: n // 10]]), client=client, progress=False)
        lines.append(_line(size, "the same frame after other frames", *_pairs(client, frame, tmp / "o.parquet",
                                                                               pairs)))
    return lines


_CHILD_STREAM = r"""
import json, sys, time, warnings
import pandas as pd
import apollo_frames
from apollo_frames import ApolloClient
src, dst, cache_dir, key, base_url, mode = sys.argv[1:7]
t = time.perf_counter()
if mode == "enrich":  # every row is cached: nothing is sent to the (never resolved) sandbox URL
    client = ApolloClient(api_key=key, base_url=base_url, cache_dir=cache_dir, cache_namespace="sandbox",
                          allow_insecure_http=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = apollo_frames.enrich_parquet(src, dst=dst, client=client, progress=False)
else:  # the yardstick: read the same output and write it again
    pd.read_parquet(src).to_parquet(dst)
    out = {}
elapsed = time.perf_counter() - t
rss = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])  # this process's own peak
print(json.dumps({"maxrss_kib": rss, "elapsed": elapsed, **{k: out.get(k) for k in ("api_calls", "matched", "rows")}}))
"""


def stream(n: int, size: str, tmp: Path, pairs: int = 1) -> list[tuple[str, str]]:
    """``n`` distinct cached people streamed through ``enrich_parquet`` in file order (the run that wrote the
    copies, then again), then shuffled; each beside ``read_parquet`` + ``to_parquet`` of its own output, in
    child processes (peak RSS is each child's own VmHWM)."""
    import subprocess
    import sys

    from apollo_frames.sandbox import DEFAULT_API_KEY, SANDBOX_BASE_URL

    tmp.mkdir(parents=True, exist_ok=True)
    cache_dir, frame, _ = filled_store(tmp, n, size)
    frame.to_parquet(tmp / "in.parquet", row_group_size=50_000)
    frame.sample(frac=1.0, random_state=5).to_parquet(tmp / "shuffled.parquet", row_group_size=50_000)

    def child(src: str, dst: str, mode: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", _CHILD_STREAM, str(tmp / src), str(tmp / dst), str(cache_dir),
                               DEFAULT_API_KEY, SANDBOX_BASE_URL, mode], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = child("in.parquet", "out.parquet", "enrich")
    rows = [(f"{size}: first run, file order (flattens {n:,} raw answers)",
             f"{first['elapsed']:.1f} s, {first['maxrss_kib'] / 1024:,.0f} MB")]
    for name, src in (("file order", "in.parquet"), ("shuffled", "shuffled.parquet")):
        for _ in range(pairs):
            run = child(src, "out.parquet", "enrich")
            assert run["api_calls"] == 0 and run["rows"] == n, run
            base = child("out.parquet", "again.parquet", "yardstick")
            rows.append((f"{size}: {n:,} distinct people, {name}: enrich_parquet / (read_parquet + to_parquet)",
                         f"{run['elapsed']:.1f} s / {base['elapsed']:.1f} s = {run['elapsed'] / base['elapsed']:.2f}x; "
                         f"peak {run['maxrss_kib'] / 1024:,.0f} MB (yardstick {base['maxrss_kib'] / 1024:,.0f} MB); "
                         f"load {os.getloadavg()[0]:.1f}"))
    return rows


def _line(size: str, name: str, run_s: float, read_s: float, ratios: list[float]) -> str:
    per_pair = " / ".join(f"{r:.2f}x" for r in (ratios[0], ratios[len(ratios) // 2], ratios[-1]))
    return f"| {size} | {name} | {run_s:.2f} s / {read_s:.2f} s = {run_s / read_s:.2f}x | {per_pair} | " \
           f"{os.getloadavg()[0]:.1f} |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--size", choices=["8k", "1k", "both"], default="both")
    parser.add_argument("--stream", type=int, default=0, help="rows of the streaming case (runs only that)")
    args = parser.parse_args(argv)
    if args.stream:
        with tempfile.TemporaryDirectory() as tmp:
            for size in (["8k", "1k"] if args.size == "both" else [args.size]):
                for name, value in stream(args.stream, size, Path(tmp) / size, args.pairs):
                    print(f"| {name} | {value} |", flush=True)
        return 0
    print("| answers | case | enrich / read_parquet, best times | per pair (min / median / max) | load |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (["8k", "1k"] if args.size == "both" else [args.size]):
            for line in bench(args.n, size, args.pairs, Path(tmp)):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
