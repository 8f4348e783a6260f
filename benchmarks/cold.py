"""A cold run: memory peak and client CPU per row, ``enrich_people`` beside a hand-built httpx + json_normalize.

    python -m benchmarks.cold [--n 20000] [--size 8k|1k] [--repeat 2] [--concurrency 8]

The sandbox serves ``n`` distinct people from a process of its own (as Apollo would be), its answers grown
to about 8 KB like Apollo's recordings (eight distinct entries of employment history; ``--size 1k``: the
sandbox's own, about 6 KB). Each side runs in a fresh child process, alternating:

* ours: ``enrich_people`` of a frame of the ``n`` e-mails, from an empty store;
* raw: an httpx client and a thread pool (the same concurrency and connection limit) posting the same
  bulk_match bodies, keeping every match, then ``pd.json_normalize`` of all of them.

Each child reports its peak resident memory (``VmHWM``: the interpreter, pandas and pyarrow included) and
the CPU time of its process over the work (``time.process_time``, every thread; imports left out). The
figures are the peaks, the CPU per row of each side and their ratio (median of the pairs; best to best).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from apollo_frames.ops.people import people_job
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

from .dispatch import served

_SERVER = r"""
import json, sys
from apollo_frames.sandbox import Sandbox, SandboxConfig
n_orgs, size = int(sys.argv[1]), sys.argv[2]
config = SandboxConfig(n_orgs=n_orgs, limits={"people/bulk_match": (None, None, None)},
                       credit_limits={"lead_credit": 10**9})
sb = Sandbox(config)
if size == "8k":  # about 8 KB per answer, as Apollo's recordings: eight distinct jobs (benchmarks.flatten.sized)
    for i, p in enumerate(sb.world.people):
        first = (p.get("employment_history") or [{"title": "Engineer"}])[:1]
        p["employment_history"] = [{**h, "id": f"{i:08x}{n:04x}", "title": f"{h.get('title')} {n}"}
                                   for n in range(8) for h in first]
print(sb.start(), flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
"""

_PEAK = r"""
def peak_mb():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
"""

_OURS = _PEAK + r"""
import json, sys, time, warnings
import pandas as pd
import apollo_frames
src, cache_dir, url, key, concurrency = sys.argv[1:6]
frame = pd.read_json(src)
client = apollo_frames.ApolloClient(api_key=key, base_url=url, cache_dir=cache_dir, concurrency=int(concurrency),
                                    rate_limits=(None, None, None), cache_namespace="cold")
cpu, wall = time.process_time(), time.perf_counter()
with client, warnings.catch_warnings():
    warnings.simplefilter("ignore")
    out = apollo_frames.enrich_people(frame, client=client, progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    matched = int((out["apollo_status"] == "matched").sum())
print(json.dumps({"peak_mb": peak_mb(), "cpu": cpu, "wall": wall, "rows": len(out), "matched": matched,
                  "columns": out.shape[1], "calls": out.attrs["apollo"]["api_calls"]}))
"""

_RAW = _PEAK + r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import httpx
import pandas as pd
bodies_file, url, key, concurrency = sys.argv[1:5]
bodies = json.load(open(bodies_file))
cpu, wall = time.process_time(), time.perf_counter()
limits = httpx.Limits(max_connections=int(concurrency) + 2)
with httpx.Client(base_url=url + "/", headers={"X-Api-Key": key}, limits=limits, timeout=60) as http, \
        ThreadPoolExecutor(int(concurrency)) as pool:
    def post(body):
        response = http.post("people/bulk_match", json=body)
        response.raise_for_status()
        return response.json()["matches"]
    matches = [m for got in pool.map(post, bodies) for m in got]
out = pd.json_normalize(matches)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"peak_mb": peak_mb(), "cpu": cpu, "wall": wall, "rows": len(out),
                  "matched": sum(m is not None for m in matches), "columns": out.shape[1], "calls": len(bodies)}))
"""


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(n: int, size: str, repeat: int, concurrency: int) -> list[tuple[dict, dict]]:
    n_orgs = math.ceil(n / 12 * 1.15)
    people = [p for p in Sandbox(SandboxConfig(n_orgs=n_orgs)).world.people if p.get("email")][:n]
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    prepared, op, options = people_job(frame)
    records = [r for r in prepared.records if r is not None]
    bodies = [op.build_payload(records[i:i + op.batch_size], options) for i in range(0, len(records), op.batch_size)]
    pairs = []
    with served(_SERVER, str(n_orgs), size, wait=30) as url, tempfile.TemporaryDirectory(prefix="apollo_cold_") as tmp:
        src, bodies_file = Path(tmp) / "frame.json", Path(tmp) / "bodies.json"
        frame.to_json(src)
        bodies_file.write_text(json.dumps(bodies))
        for i in range(repeat):
            raw = _child(_RAW, str(bodies_file), url, DEFAULT_API_KEY, str(concurrency))
            ours = _child(_OURS, str(src), str(Path(tmp) / f"store{i}"), url, DEFAULT_API_KEY, str(concurrency))
            ours["load"] = os.getloadavg()[0]
            if ours["matched"] != n or raw["matched"] != n:
                raise RuntimeError(f"not every person was matched: ours {ours['matched']}, raw {raw['matched']}")
            pairs.append((ours, raw))
            print(f"  pair {i + 1}: ours {ours['peak_mb']:.0f} MB, {ours['cpu'] / n * 1e6:.0f} us CPU/row "
                  f"({ours['wall']:.1f} s); raw {raw['peak_mb']:.0f} MB, {raw['cpu'] / n * 1e6:.0f} us CPU/row "
                  f"({raw['wall']:.1f} s); load {ours['load']:.1f}", flush=True)
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--size", choices=["8k", "1k"], default="8k")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    pairs = measure(args.n, args.size, args.repeat, args.concurrency)
    ours, raw = [p[0] for p in pairs], [p[1] for p in pairs]
    ratios = [o["cpu"] / r["cpu"] for o, r in pairs]
    best = min(o["cpu"] for o in ours) / min(r["cpu"] for r in raw)
    print(f"{args.n:,} people, {args.size} answers: peak ours {max(o['peak_mb'] for o in ours):.0f} MB, raw "
          f"{max(r['peak_mb'] for r in raw):.0f} MB; client CPU per row ours / raw: median "
          f"{statistics.median(ratios):.2f}x, best to best {best:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
