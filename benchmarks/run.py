"""apollo_frames benchmarks, against the offline sandbox, in one process (children where stated).

    python -m benchmarks              # everything, writes benchmarks/RESULTS.md
    python -m benchmarks --quick      # smaller sizes (development; RESULTS.md says so)
    python -m benchmarks --only 3 4   # some of them

The machine may be shared and noisy: every speed figure is a ratio of two
things measured side by side in the same run; absolute times are for context.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import apollo_frames
from apollo_frames import ApolloClient
from apollo_frames.core import schema
from apollo_frames.sandbox import DEFAULT_API_KEY, SANDBOX_BASE_URL, Sandbox, SandboxConfig, build_world

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: schema.py before the memoised JSON writing, for the before/after flatten ratio (read from git when available)
BASELINE_SCHEMA_REV = "6fbb642"


class Result:
    def __init__(self, number: int, title: str):
        self.number, self.title = number, title
        self.rows: list[tuple[str, str]] = []
        self.notes: list[str] = []

    def add(self, name: str, value) -> None:
        self.rows.append((name, value if isinstance(value, str) else fmt_number(value)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        out = [f"### {self.number}. {self.title}", "", "| measure | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def text(self) -> str:
        width = max((len(k) for k, _ in self.rows), default=10)
        lines = [f"== {self.number}. {self.title}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.rows]
        lines += [textwrap.fill(n, 110, initial_indent="  * ", subsequent_indent="    ") for n in self.notes]
        return "\n".join(lines)


def fmt_number(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def sandbox_client(sb: Sandbox, cache_dir: Path, **kw) -> ApolloClient:
    kw.setdefault("concurrency", 8)
    return sb.client(cache_dir=str(cache_dir), **kw)


def people_with_email(world, n: int, offset: int = 0) -> list[dict]:
    picked = [p for p in world.people if p.get("email")]
    return picked[offset:offset + n]


# ---------------------------------------------------------------------------------------------- 1
def bench_requests(tmp: Path, quick: bool) -> Result:
    r = Result(1, "Requests per 1,000 input rows (30 % duplicates, 20 % of rows already cached)")
    rows_n = 1000
    sb = Sandbox(SandboxConfig(n_orgs=300))
    unique = people_with_email(sb.world, 700)
    rng = random.Random(1)
    emails = [p["email"] for p in unique]
    rows = emails + [rng.choice(emails) for _ in range(rows_n - len(emails))]  # 300 repeats
    rng.shuffle(rows)
    # 20 % of the rows already cached: cache the people behind the first 200 rows (by an earlier run)
    cached_unique = set(emails[:140])  # 20 % of the people, so about 20 % of the rows
    with sandbox_client(sb, tmp / "b1") as client:
        apollo_frames.enrich_people(pd.DataFrame({"email": sorted(cached_unique)}), client=client, progress=False)
        before = sb.count(path="people/bulk_match")
        # messy spellings of the same people: normalisation must still dedupe them
        frame = pd.DataFrame({"Email": [e.upper() if i % 3 == 0 else f"  {e} " for i, e in enumerate(rows)]})
        out = apollo_frames.enrich_people(frame, client=client, progress=False)
        sent = sb.count(path="people/bulk_match") - before
    uncached_unique = len(set(rows) - cached_unique)
    minimum = math.ceil(uncached_unique / 10)
    r.add("input rows", rows_n)
    r.add("unique people", len(set(rows)))
    r.add("rows whose person was cached", sum(e in cached_unique for e in rows))
    r.add("uncached unique people", uncached_unique)
    r.add("requests sent", sent)
    r.add("theoretical minimum ceil(uncached unique / 10)", minimum)
    r.add("ratio to minimum (target 1.00)", f"{sent / minimum:.2f}")
    r.add("naive per-row people/match loop", f"{rows_n:,} requests ({rows_n / sent:.1f}x more)")
    r.add("rows matched", int((out["apollo_status"] == "matched").sum()))
    r.note("E-mails are sent messy (upper case, padded) so dedupe works on normalised values; the cached 20 % "
           "come from an earlier run in the same cache.")
    return r


# ---------------------------------------------------------------------------------------------- 2
def bench_rate_limit(tmp: Path, quick: bool) -> Result:
    per_window, window = 100, 10
    n_req = 100 if quick else 300
    concurrency = 20
    r = Result(2, "Throughput under a rate limit (loopback HTTP, 1 s latency, 100 requests / 10 s window)")
    cfg = SandboxConfig(n_orgs=500, latency=1.0, windows=(window, 3600, 86400),
                        limits={"people/bulk_match": (per_window, 100_000, 1_000_000)})
    sb = Sandbox(cfg)
    people = [p["id"] for p in sb.world.people[: n_req * 10]]
    frame = pd.DataFrame({"person_id": people})
    with sb.serve() as url:
        client = ApolloClient(api_key=DEFAULT_API_KEY, base_url=url, cache_dir=str(tmp / "b2"), concurrency=concurrency,
                              window_seconds=(window, 3600, 86400), plan="paid", cache_namespace="b2")
        with client:
            t0 = time.monotonic()
            out = apollo_frames.enrich_people(frame, client=client, progress=False)
            elapsed = time.monotonic() - t0
            stats = client.stats
    reqs = [q for q in sb.requests if q.path == "people/bulk_match"]
    ok = [q for q in reqs if q.status == 200]
    n429 = sum(q.status == 429 for q in reqs)
    allowed = per_window / window
    t_first = min(q.t for q in reqs)
    # steady state: requests arriving during the full windows before the last one
    full = (math.ceil(len(ok) / per_window) - 1) * window
    in_full = sum(1 for q in ok if q.t < t_first + full) if full else len(ok)
    k = math.ceil(n_req / per_window)
    ideal = (k - 1) * window + math.ceil((n_req - (k - 1) * per_window) / concurrency) * 1.0
    r.add("unique people / requests needed", f"{len(people):,} / {n_req}")
    r.add("concurrency (requests in flight)", concurrency)
    r.add("requests answered 200", len(ok))
    r.add("429 answers", n429)
    r.add("elapsed", f"{elapsed:.1f} s (ideal schedule {ideal:.0f} s)")
    if full:
        r.add("achieved rate over the full windows", f"{in_full / full:.2f} req/s (allowed {allowed:.0f} req/s)")
        r.add("achieved / allowed (target >= 0.90)", f"{in_full / full / allowed:.2f}")
    r.add("ideal / actual elapsed", f"{ideal / elapsed:.2f}")
    r.add("client rate-limit wait", f"{stats.rate_limit_wait_s:.1f} s")
    r.add("rows matched", int((out["apollo_status"] == "matched").sum()))
    r.note("The client is told the window length (window_seconds=(10, 3600, 86400)): the sandbox compresses "
           "Apollo's minute window to 10 s and Apollo sends no reset header. Limits come from the headers.")
    r.note("'achieved rate over the full windows' counts requests the sandbox received during the windows before "
           "the last one (the last window is only partly needed); the ideal schedule is every window opened as "
           "soon as allowed, the last one's requests at full concurrency.")
    return r


# ---------------------------------------------------------------------------------------------- 3
def _baseline_schema():
    try:
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_SCHEMA_REV}:apollo_frames/schema.py"],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "schema_baseline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("schema_baseline", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn):
    gc.collect()
    t = time.perf_counter()
    c = time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def bench_flatten(tmp: Path, quick: bool) -> Result:
    n = 20_000 if quick else 100_000
    r = Result(3, f"Flattening {n:,} person records into the declared schema")
    world = build_world(seed=7, n_orgs=math.ceil(n / 12 * 1.01), people_per_org=12)
    # as they arrive: each record decoded from JSON on its own (no shared objects)
    records = [json.loads(json.dumps(p)) for p in world.people[:n]]
    del world
    base = _baseline_schema()
    new_t, new_s, new_c = _timed(lambda: schema.to_pandas(schema.flatten_people(records)))
    jn_t, jn_s, jn_c = _timed(lambda: pd.json_normalize(records))
    r.add("records (unique people, JSON-decoded one by one)", len(records))
    r.add("flatten_people + to_pandas", f"{new_s:.2f} s wall, {new_c:.2f} s CPU")
    r.add("pandas.json_normalize", f"{jn_s:.2f} s wall, {jn_c:.2f} s CPU")
    r.add("json_normalize / flatten (target >= 3x)", f"{jn_s / new_s:.2f}x wall, {jn_c / new_c:.2f}x CPU")
    if base is not None:
        old_t, old_s, old_c = _timed(lambda: base.to_pandas(base.flatten_people(records)))
        added = [c for c in new_t.columns if c not in old_t.columns]  # declared since the baseline
        same = list(new_t.columns.drop(added)) == list(old_t.columns) and old_t.equals(new_t.drop(columns=added))
        r.add(f"before (schema.py at {BASELINE_SCHEMA_REV})", f"{old_s:.2f} s wall, {old_c:.2f} s CPU")
        r.add("before / after", f"{old_s / new_s:.2f}x wall, {old_c / new_c:.2f}x CPU")
        r.add("json_normalize / before", f"{jn_s / old_s:.2f}x wall")
        r.add("output identical to before" + (f" (columns declared since left out: {', '.join(added)})" if added
                                               else ""), "yes" if same else "NO")
    else:
        r.note("baseline schema.py not available from git: before/after not measured in this run")
    r.note("json_normalize's output is not the declared schema (no type coercion, lists stay objects, every "
           "undeclared key becomes a column); it is the yardstick the issue names.")
    r.note("JSON columns and extra are written by orjson since FLATTEN_VERSION 3 (issue 27); "
           "`python -m benchmarks.flatten` measures 8 KB and 1 KB answers beside json_normalize, alternating.")
    return r


# ---------------------------------------------------------------------------------------------- 4/5 shared cache
def _filled_cache(tmp: Path, unique: int) -> tuple[Path, list[dict]]:
    """A cache holding ``unique`` people (by e-mail), filled through the in-process sandbox."""
    cache_dir = tmp / "shared_cache"
    sb = Sandbox(SandboxConfig(n_orgs=max(300, math.ceil(unique / 10.5))))
    people = people_with_email(sb.world, unique)
    if len(people) < unique:
        raise RuntimeError(f"sandbox world too small: {len(people)} people with e-mail")
    rows = [{"email": p["email"], "first_name": p["first_name"], "last_name": p["last_name"],
             "company": p["organization"]["name"]} for p in people]
    if not (cache_dir / ".filled").exists():
        with sandbox_client(sb, cache_dir, concurrency=8) as client:
            apollo_frames.enrich_people(pd.DataFrame(rows), client=client, progress=False)
        (cache_dir / ".filled").write_text(str(unique))
    return cache_dir, rows


def bench_cached(tmp: Path, quick: bool) -> Result:
    n, unique = (20_000, 4_000) if quick else (100_000, 20_000)
    r = Result(4, f"Cached re-run: {n:,} rows, all cached")
    t = time.perf_counter()
    cache_dir, people = _filled_cache(tmp, unique)
    fill = time.perf_counter() - t
    rng = random.Random(4)
    frame = pd.DataFrame([people[i % unique] for i in range(n)]).sample(frac=1.0, random_state=4).reset_index(drop=True)
    sb = Sandbox(SandboxConfig(n_orgs=10))  # answers nothing useful: every row must come from the cache
    with sandbox_client(sb, cache_dir) as client:
        out, wall, cpu = _timed(lambda: apollo_frames.enrich_people(frame, client=client, progress=False))
    summary = out.attrs["apollo"]
    path = tmp / "b4.parquet"
    out.to_parquet(path)
    _, read_s, _ = _timed(lambda: pd.read_parquet(path))
    r.add("rows / unique people", f"{n:,} / {unique:,}")
    r.add("requests sent", summary["api_calls"])
    r.add("enrich_people (all cached)", f"{wall:.2f} s, {n / wall:,.0f} rows/s")
    r.add("pandas.read_parquet of the same output", f"{read_s:.2f} s, {n / read_s:,.0f} rows/s")
    r.add("enrich / read_parquet time", f"{wall / read_s:.1f}x")
    r.add("cache fill (in-process sandbox, not timed above)", f"{fill:.1f} s")
    r.note(f"{unique:,} unique people repeated to {n:,} rows (so the cache fill stays quick); the rows are "
           "deduped before the cache is read, in one transaction (cache.get_many).")
    rng.random()
    return r


# ---------------------------------------------------------------------------------------------- 8
def _distinct_cache(tmp: Path, n: int) -> tuple[Path, pd.DataFrame]:
    """A store holding the answers of ``n`` distinct people (written straight into the store) and their frame."""
    from apollo_frames.ops.people import people_job

    world = build_world(seed=8, n_orgs=math.ceil(n / 12 * 1.15), people_per_org=12)
    people = [p for p in world.people if p.get("email")][:n]
    del world
    frame = pd.DataFrame({"email": [p["email"] for p in people], "first_name": [p["first_name"] for p in people],
                          "last_name": [p["last_name"] for p in people],
                          "company": [p["organization"]["name"] for p in people]})
    cache_dir = tmp / "b8"
    with sandbox_client(Sandbox(SandboxConfig(n_orgs=10)), cache_dir) as client:
        prepared, op, options = people_job(frame)
        keys = [client.cache.key(op.endpoint, identity, options) for identity in prepared.identities]
        for start in range(0, n, 1000):  # each answer decoded from JSON on its own, as the API gives them
            answers = [json.loads(json.dumps(p)) for p in people[start:start + 1000]]
            client.cache.set_many(dict(zip(keys[start:start + 1000], answers, strict=True)), ttl=None)
    return cache_dir, frame


def _side_by_side(run, path: Path, pairs: int) -> tuple[list[float], list[float]]:
    """``pairs`` timings of ``run()`` and of ``pd.read_parquet(path)``, alternating (the machine may be shared)."""
    runs, reads = [], []
    for _ in range(pairs):
        out, wall, _ = _timed(run)
        runs.append(wall)
        del out
        _, read_s, _ = _timed(lambda: pd.read_parquet(path))
        reads.append(read_s)
    return runs, reads


def _ratios(runs: list[float], reads: list[float]) -> str:
    ratios = sorted(w / q for w, q in zip(runs, reads, strict=True))
    return " / ".join(f"{x:.2f}x" for x in (ratios[0], ratios[len(ratios) // 2], ratios[-1]))


def bench_cached_distinct(tmp: Path, quick: bool) -> Result:
    n = 20_000 if quick else 100_000
    r = Result(10, f"Cached re-run: {n:,} distinct people, all cached")
    t = time.perf_counter()
    cache_dir, frame = _distinct_cache(tmp, n)
    fill = time.perf_counter() - t
    sb = Sandbox(SandboxConfig(n_orgs=10))  # answers nothing useful: every row must come from the cache
    path, repeated_path = tmp / "b8.parquet", tmp / "b8_repeated.parquet"
    # a fifth of the people, each five times, shuffled: the rows are read key by key out of the stored blocks
    repeated = pd.concat([frame.iloc[: n // 5]] * 5, ignore_index=True).sample(frac=1.0, random_state=10)
    repeated = repeated.reset_index(drop=True)
    with sandbox_client(sb, cache_dir) as client:
        first, first_s, _ = _timed(lambda: apollo_frames.enrich_people(frame, client=client, progress=False))
        first.to_parquet(path)
        runs, reads = _side_by_side(lambda: apollo_frames.enrich_people(frame, client=client, progress=False),
                                    path, 5)
        again = apollo_frames.enrich_people(frame, client=client, progress=False)
        apollo_frames.enrich_people(repeated, client=client, progress=False).to_parquet(repeated_path)
        rep_runs, rep_reads = _side_by_side(
            lambda: apollo_frames.enrich_people(repeated, client=client, progress=False), repeated_path, 5)
    summary = again.attrs["apollo"]
    r.add("rows / distinct people", f"{n:,} / {n:,}")
    r.add("requests sent / cache hits", f"{summary['api_calls']} / {summary['cache_hits']:,}")
    r.add("enrich_people, re-run (best of 5)", f"{min(runs):.2f} s, {n / min(runs):,.0f} rows/s")
    r.add("pandas.read_parquet of the same output (best of 5)", f"{min(reads):.2f} s, {n / min(reads):,.0f} rows/s")
    r.add("enrich / read_parquet, best times (target <= 3x)", f"{min(runs) / min(reads):.2f}x")
    r.add("enrich / read_parquet, per pair (min / median / max)", _ratios(runs, reads))
    r.add("first re-run of answers stored without flattened copies", f"{first_s:.2f} s ({first_s / min(reads):.1f}x)")
    r.add("output identical to the first re-run", "yes" if again.equals(first) else "NO")
    r.add(f"repeated people ({n // 5:,} x 5 rows, shuffled): enrich / read_parquet, best times",
          f"{min(rep_runs):.2f} s / {min(rep_reads):.2f} s = {min(rep_runs) / min(rep_reads):.2f}x")
    r.add("repeated people: per pair (min / median / max)", _ratios(rep_runs, rep_reads))
    r.add("store fill (answers written straight into the store, not timed above)", f"{fill:.1f} s")
    r.note("Every row a different person; the answers (the sandbox world's person records, ~5 KB of JSON each) "
           "are written straight into the store, because asking the in-process sandbox for 100,000 people "
           "takes minutes. So the first re-run finds raw JSON answers only: it decodes and flattens them once "
           "and keeps flattened copies (Arrow IPC blocks beside the raw answers); a run that fetched the "
           "answers keeps the copies itself, so its re-runs are all like the later ones.")
    r.note("A re-run includes everything enrich_people does: normalising the rows (Arrow string kernels), "
           "hashing the keys, checking each block of 1,000 keys against the stored block in one query, "
           "decoding the blocks (side by side on threads, as read_parquet does), the match-quality flags "
           "(column kernels) and the conversion to pandas. The repeated-people frame reads its rows key by "
           "key out of the stored blocks (its first appearances are in another order) and builds 100,000 "
           "output rows from 20,000 answers.")
    return r


# ---------------------------------------------------------------------------------------------- 5
_CHILD_MEMORY = r"""
import json, resource, sys, time, warnings
import apollo_frames
from apollo_frames import ApolloClient
src, dst, cache_dir, key, base_url = sys.argv[1:6]
# every row is cached: nothing is sent to the (never resolved) sandbox URL
client = ApolloClient(api_key=key, base_url=base_url, cache_dir=cache_dir, cache_namespace="sandbox",
                      allow_insecure_http=True)
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    out = apollo_frames.enrich_parquet(src, dst=dst, client=client, progress=False)
elapsed = time.perf_counter() - t
try:  # this process's own peak; ru_maxrss would also count the parent's peak before exec (Linux keeps it)
    rss = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
except (OSError, IndexError):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"maxrss_kib": rss, "elapsed": elapsed, "api_calls": out["api_calls"], "rows": out["rows"],
                  "matched": out["matched"], "cache_hits": out["cache_hits"], "chunks": out["chunks"]}))
"""


def bench_memory(tmp: Path, quick: bool) -> Result:
    n, unique = (200_000, 4_000) if quick else (1_000_000, 20_000)
    r = Result(5, f"Memory: streaming {n:,} fully cached rows through enrich_parquet")
    cache_dir, people = _filled_cache(tmp, unique)
    src = tmp / "b5_in.parquet"
    table = pa.Table.from_pylist(people)
    reps = math.ceil(n / unique)
    big = pa.concat_tables([table] * reps).slice(0, n)
    pq.write_table(big, src, row_group_size=50_000)
    del big, table
    dst = tmp / "b5_out.parquet"
    proc = subprocess.run([sys.executable, "-c", _CHILD_MEMORY, str(src), str(dst), str(cache_dir), DEFAULT_API_KEY,
                           SANDBOX_BASE_URL], capture_output=True, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        r.add("status", "FAILED")
        r.note(proc.stderr[-2000:])
        return r
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    rss_mb = got["maxrss_kib"] / 1024
    r.add("rows / unique people", f"{got['rows']:,} / {unique:,}")
    r.add("chunks (chunk_rows=10,000, the default)", got["chunks"])
    r.add("requests sent", got["api_calls"])
    r.add("rows matched", got["matched"])
    r.add("peak RSS of the child (VmHWM)", f"{rss_mb:,.0f} MB (target <= 500 MB)")
    r.add("elapsed", f"{got['elapsed']:.1f} s ({got['rows'] / got['elapsed']:,.0f} rows/s)")
    r.add("input / output file", f"{src.stat().st_size / 1e6:.1f} MB / {dst.stat().st_size / 1e6:.1f} MB")
    r.note(f"Input: {unique:,} unique people repeated to {n:,} rows (so the cache fill is quick); the child has no "
           "route to the sandbox, so any row not answered from the cache would end in error. RSS includes the "
           "interpreter, pandas and pyarrow. Peak RSS is the child's VmHWM: its ru_maxrss also counts the "
           "benchmark parent's peak from before exec, which is what the 4.8 GB of the first run measured.")
    from .anyframe import stream  # (anyframe imports this module)

    for name, value in stream(40_000 if quick else 200_000, "1k", tmp / "b5_shuffled"):
        r.add(name, value)
    r.note("Distinct people, file order then shuffled (`python -m benchmarks.anyframe --stream N`): 200,000 rows, "
           "not 1,000,000: each chunk of a shuffled file has rows in every stored block, so every block is decoded "
           "once per chunk and the time grows with rows x stored rows.")
    return r


# ---------------------------------------------------------------------------------------------- 6
_CHILD_RESUME = r"""
import sys, warnings
import apollo_frames
from apollo_frames import ApolloClient
src, dst, cache_dir, key, base_url = sys.argv[1:6]
client = ApolloClient(api_key=key, base_url=base_url, cache_dir=cache_dir, cache_namespace="b6", concurrency=4)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    apollo_frames.enrich_parquet(src, dst=dst, client=client, progress=False, chunk_rows=500)
"""


def bench_resume(tmp: Path, quick: bool) -> Result:
    n = 1_000 if quick else 3_000
    r = Result(6, f"Resume: {n:,} people, kill -9 at 50 %, run again")
    sb = Sandbox(SandboxConfig(n_orgs=400, latency=0.05))
    people = [p["id"] for p in sb.world.people[:n]]
    src = tmp / "b6_in.parquet"
    pq.write_table(pa.table({"person_id": people}), src)
    needed = math.ceil(n / 10)

    def run(cache: str, dst: Path, kill_at: int | None) -> tuple[float, int, bool]:
        credits0, reqs0 = sb.credits_consumed, sb.count(path="people/bulk_match")
        args = [sys.executable, "-c", _CHILD_RESUME, str(src), str(dst), cache, DEFAULT_API_KEY, url]
        proc = subprocess.Popen(args, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killed = False
        while proc.poll() is None:
            if kill_at is not None and sb.count(path="people/bulk_match") - reqs0 >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        proc.wait()
        if not killed and proc.returncode != 0:
            err = proc.stderr.read().decode() if proc.stderr is not None else ""
            raise RuntimeError(f"child failed ({proc.returncode}): {err[-1500:]}")
        time.sleep(0.3)  # answers in flight at the kill are still charged by the sandbox
        return sb.credits_consumed - credits0, sb.count(path="people/bulk_match") - reqs0, killed

    with sb.serve() as url:
        full_credits, full_reqs, _ = run(str(tmp / "b6_full"), tmp / "b6_full.parquet", None)
        c1, q1, killed = run(str(tmp / "b6_resume"), tmp / "b6_resume.parquet", needed // 2)
        c2, q2, _ = run(str(tmp / "b6_resume"), tmp / "b6_resume.parquet", None)
    same = pd.read_parquet(tmp / "b6_full.parquet").equals(pd.read_parquet(tmp / "b6_resume.parquet"))
    r.add("uninterrupted run: credits / requests", f"{full_credits:g} / {full_reqs}")
    r.add("killed run: credits / requests", f"{c1:g} / {q1}" + ("" if killed else " (finished before the kill!)"))
    r.add("second run: credits / requests", f"{c2:g} / {q2}")
    r.add("both runs / uninterrupted (target 1.00)", f"{(c1 + c2) / full_credits:.3f}")
    r.add("extra credits (bound: in flight at the kill, concurrency 4 x 10)", f"{c1 + c2 - full_credits:g}")
    r.add("output identical to the uninterrupted run", "yes" if same else "NO")
    r.note("enrich_parquet in a child over loopback HTTP (chunk_rows=500, concurrency 4, 50 ms latency); the "
           "child is SIGKILLed when the sandbox has answered half the requests; credits are the sandbox's count.")
    return r


# ---------------------------------------------------------------------------------------------- 7
def _credits(frame: pd.DataFrame) -> float:
    """The credits an enrichment run reports it spent."""
    return frame.attrs["apollo"]["credits_consumed"]


def bench_estimate(tmp: Path, quick: bool) -> Result:
    r = Result(7, "Credit estimate accuracy (2,000-row messy frames, known match rate)")
    sb = Sandbox(SandboxConfig(n_orgs=600))
    rng = random.Random(7)
    people = people_with_email(sb.world, 4000)

    def messy(persons: list[dict], seed: int) -> tuple[pd.DataFrame, int]:
        g = random.Random(seed)
        rows = []
        for i, p in enumerate(persons):
            kind = g.random()
            if kind < 0.70:  # real person, messy e-mail
                rows.append({"E-mail": f" {p['email'].upper()} ", "First Name": p["first_name"], "Company": ""})
            elif kind < 0.90:  # nobody: no match
                rows.append({"E-mail": f"nobody{seed}.{i}@unknown-{i}.example", "First Name": "X", "Company": ""})
            elif kind < 0.95:  # duplicate of an earlier row
                blank = {"E-mail": "", "First Name": "", "Company": ""}
                rows.append(dict(rows[g.randrange(len(rows))]) if rows else blank)
            else:  # invalid
                rows.append({"E-mail": "not an email", "First Name": "Y", "Company": ""})
        return pd.DataFrame(rows), 0

    frame_a, _ = messy(people[:2000], 1)
    frame_b, _ = messy(people[2000:4000], 2)
    with sandbox_client(sb, tmp / "b7") as client:
        est_a = apollo_frames.estimate(frame_a, operation="enrich_people", client=client)
        spent_a = _credits(apollo_frames.enrich_people(frame_a, client=client, progress=False))
        est_b = apollo_frames.estimate(frame_b, operation="enrich_people", client=client)
        spent_b = _credits(apollo_frames.enrich_people(frame_b, client=client, progress=False))
    r.add("frame A (no history): credits_max / expected / actual",
          f"{est_a.credits_max:g} / {est_a.credits_expected:g} / {spent_a:g}")
    r.add("frame B (after A): credits_max / expected / actual",
          f"{est_b.credits_max:g} / {est_b.credits_expected:g} / {spent_b:g}")
    r.add("credits_max >= actual", "yes" if est_a.credits_max >= spent_a and est_b.credits_max >= spent_b else "NO")
    err = (est_b.credits_expected - spent_b) / spent_b if spent_b else float("nan")
    r.add("frame B expected vs actual (target within 10 %)", f"{err:+.1%}")
    r.note("Rows: ~70 % real people (messy e-mails), ~20 % unknown e-mails (no match), ~5 % repeats, ~5 % invalid. "
           "A and B hold different people drawn the same way; B is estimated after A ran.")
    rng.random()
    return r


# ---------------------------------------------------------------------------------------------- 11
def bench_dispatch(tmp: Path, quick: bool) -> Result:
    """``benchmarks/dispatch.py``: enrich_people's requests/s vs a raw httpx pool, same bodies, same concurrency."""
    from benchmarks.dispatch import measure

    r = Result(11, "Dispatch: enrich_people vs a raw httpx thread pool (loopback, 50 ms latency, 8 in flight)")
    got = measure(people=1200 if quick else 2400, repeat=2 if quick else 9)
    runs = {key: ", ".join(f"{x:.0f}" for x in got[f"{key}_all"]) for key in ("raw", "ours", "whole")}
    r.add("requests per run", got["requests"])
    r.add("ideal (concurrency / latency)", f"{got['ideal_rps']:.0f} req/s")
    r.add("raw httpx thread pool (best run)", f"{got['raw_rps']:.1f} req/s (runs: {runs['raw']})")
    r.add("enrich_people dispatch, empty store (best run)", f"{got['ours_rps']:.1f} req/s (runs: {runs['ours']})")
    r.add("dispatch / raw, median of the alternating pairs (target >= 0.90)", f"{got['ratio_median']:.2f} (pairs: "
          + ", ".join(f"{x:.2f}" for x in got["pair_ratios"]) + ")")
    r.add("dispatch / raw, best run to best run", f"{got['ratio']:.2f}")
    r.add("enrich_people whole call (best run)", f"{got['whole_rps']:.1f} req/s (runs: {runs['whole']})")
    r.add("whole call / raw", f"{got['whole_ratio']:.2f}")
    r.note("The sandbox runs in a process of its own, as Apollo would be remote; both sides send the same bodies with "
           "the same concurrency and connection limit, and alternate. The dispatch is summary.send_s: from the first "
           "claim to the last answer stored (claims; on the workers a ledger row before each request, the answers "
           "parsed and stored (a group commit) before the worker sends again; on the writer thread the ledger "
           "settled and the claims released). The whole call also plans, reads the "
           "credit meter before and after (two requests), flattens the answers and builds the frame. The figure is "
           "the median of the pairs' ratios (both sides of a pair see the same load); best to best beside it.")
    return r


from .frames import bench_dask, bench_polars  # noqa: E402  (they use the helpers above)

BENCHES = {1: bench_requests, 2: bench_rate_limit, 3: bench_flatten, 4: bench_cached, 5: bench_memory,
           6: bench_resume, 7: bench_estimate, 8: bench_polars, 9: bench_dask,
           10: bench_cached_distinct, 11: bench_dispatch}


def machine() -> dict:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return {
        "cores": os.cpu_count(), "memory": f"{mem:.1f} GiB", "python": platform.python_version(),
        "platform": platform.platform(), "pandas": pd.__version__, "pyarrow": pa.__version__,
        "apollo_frames": apollo_frames.__version__,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--only", type=int, nargs="+", choices=sorted(BENCHES), help="run only these")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="results file (default benchmarks/RESULTS.md)")
    args = ap.parse_args(argv)
    chosen = args.only or sorted(BENCHES)
    started = time.monotonic()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="apollo_bench_") as tmpdir:
        tmp = Path(tmpdir)
        for number in chosen:
            t = time.monotonic()
            try:
                res = BENCHES[number](tmp, args.quick)
            except Exception as exc:  # one failing benchmark should not hide the others
                res = Result(number, BENCHES[number].__name__)
                res.add("status", f"FAILED: {type(exc).__name__}: {exc}")
            res.add("benchmark wall time", f"{time.monotonic() - t:.0f} s")
            print(res.text(), flush=True)
            results.append(res)
    info = machine()
    head = [
        "# apollo_frames benchmarks", "",
        f"`python -m benchmarks{' --quick' if args.quick else ''}"
        f"{' --only ' + ' '.join(map(str, chosen)) if args.only else ''}` on "
        f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, total {time.monotonic() - started:.0f} s.", "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".", "",
        "The machine may be shared and noisy: compare the ratios measured side by side, not absolute times "
        "across runs.", "",
    ]
    Path(args.out).write_text("\n".join(head) + "\n".join(r.markdown() for r in results))
    print(f"\nwrote {args.out} ({time.monotonic() - started:.0f} s)")
    return 0
