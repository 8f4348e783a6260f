"""Counting a file's work before a run (``confirm_over``, ``estimate_file``: issue 27), in file order and shuffled.

    python -m benchmarks.count [--n 200000] [--size 1k] [--pairs 3] [--before DIR]

A store holds ``n`` people's answers, flattened by a first file run in file order. ``estimate_file`` (what a
``confirm_over`` run counts first, by ``file_work``) is then timed on the file in order and shuffled, each in a
child process (CPU time of the count alone). ``--before DIR``: a checkout of another commit's ``apollo_frames``
(e.g. ``git archive`` under /tmp), run alternately with this one in each pair, on the same store; the counts
must be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import apollo_frames

from .anyframe import filled_store

_CHILD = r"""
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])  # the checkout measured shadows the installed package
import apollo_frames
from apollo_frames import ApolloClient
src, cache_dir, key, base_url = sys.argv[2:6]
client = ApolloClient(api_key=key, base_url=base_url, cache_dir=cache_dir, cache_namespace="sandbox",
                      allow_insecure_http=True)
cpu, wall = time.process_time(), time.perf_counter()
est = apollo_frames.estimate_file(src, client=client)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
assert apollo_frames.__file__.startswith(sys.argv[1]), apollo_frames.__file__
print(json.dumps({"cpu": cpu, "wall": wall, "counts": [est.rows, est.unique, est.cached, est.to_fetch, est.api_calls]}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--size", choices=["8k", "1k"], default="1k")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--before", default=None, help="another checkout's root, compared in each pair")
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args(argv)
    from apollo_frames.sandbox import DEFAULT_API_KEY, SANDBOX_BASE_URL, Sandbox, SandboxConfig

    from .run import sandbox_client

    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="af-count-"))
    cache_dir, frame, _ = filled_store(tmp, args.n, args.size)
    frame.to_parquet(tmp / "in.parquet", row_group_size=50_000)
    frame.sample(frac=1.0, random_state=5).to_parquet(tmp / "shuffled.parquet", row_group_size=50_000)
    with sandbox_client(Sandbox(SandboxConfig(n_orgs=10)), cache_dir) as client:  # flattens, keeps the copies
        apollo_frames.enrich_parquet(tmp / "in.parquet", dst=tmp / "out.parquet", client=client, progress=False)
    here = str(Path(__file__).resolve().parent.parent)
    roots = [("this", here)] + ([("before", str(Path(args.before).resolve()))] if args.before else [])

    def child(root: str, src: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", _CHILD, root, str(tmp / src), str(cache_dir), DEFAULT_API_KEY,
                               SANDBOX_BASE_URL], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    for pair in range(args.pairs):
        for src in ("in.parquet", "shuffled.parquet"):
            order = roots if pair % 2 == 0 else roots[::-1]
            runs = {name: child(root, src) for name, root in order}
            line = "; ".join(f"{name} CPU {r['cpu']:.2f} s (wall {r['wall']:.2f} s)" for name, r in runs.items())
            counts = {json.dumps(r["counts"]) for r in runs.values()}
            ratio = f", before / this CPU {runs['before']['cpu'] / runs['this']['cpu']:.2f}x" if args.before else ""
            print(f"pair {pair + 1} {src}: {line}{ratio}; counts {' != '.join(counts)}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
