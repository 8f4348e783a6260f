"""Issue 23's cached re-runs: ``n`` distinct people, all cached, beside ``pd.read_parquet`` of the same output.

    python -m benchmarks.rerun [--n 30000 100000] [--pairs 5]

Section 10 of ``python -m benchmarks`` at any size: the store is filled with the sandbox world's person records
(about 5 KB of JSON each) written straight in, a first run flattens them (its copies kept), then ``pairs``
re-runs alternate with ``read_parquet`` of the first run's output (the machine may be shared: both sides of a
pair see the same load). Printed per size: the median of the pairs' ratios and best to best, with the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import apollo_frames
from apollo_frames.sandbox import Sandbox, SandboxConfig

from .run import _distinct_cache, _side_by_side, sandbox_client


def bench(n: int, pairs: int, tmp: Path) -> str:
    cache_dir, frame = _distinct_cache(tmp, n)
    path = tmp / f"out-{n}.parquet"
    with sandbox_client(Sandbox(SandboxConfig(n_orgs=10)), cache_dir) as client:
        first = apollo_frames.enrich_people(frame, client=client, progress=False)
        first.to_parquet(path)
        del first
        runs, reads = _side_by_side(lambda: apollo_frames.enrich_people(frame, client=client, progress=False),
                                    path, pairs)
    ratios = sorted(r / q for r, q in zip(runs, reads, strict=True))
    return (f"{n:,} distinct people: enrich best {min(runs):.3f} s, read_parquet best {min(reads):.3f} s; "
            f"median of pairs {statistics.median(ratios):.2f}x, best to best {min(runs) / min(reads):.2f}x "
            f"(pairs {', '.join(f'{x:.2f}' for x in ratios)}); load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rerun", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[30_000, 100_000])
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args(argv)
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix="apollo_rerun_") as tmp:
            start = time.monotonic()
            print(bench(n, args.pairs, Path(tmp)), f"({time.monotonic() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
