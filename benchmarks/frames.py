"""Benchmarks 8 and 9: the Polars namespace beside pandas, and a Dask run on a local cluster (Parquet in and out)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd

from apollo_frames import ApolloClient
from apollo_frames.core import schema
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig, build_world

from .run import Result, _filled_cache, _timed, sandbox_client


def bench_polars(tmp: Path, quick: bool) -> Result:
    """Flatten and enrich-from-cache through Polars, each beside the same work through pandas."""
    import polars as pl

    import apollo_frames.polars  # noqa: F401  (registers pl.DataFrame.apollo)

    n, unique = (20_000, 4_000) if quick else (100_000, 20_000)
    r = Result(8, f"Polars beside pandas: flatten {n:,} records, enrich {n:,} cached rows")
    world = build_world(seed=7, n_orgs=math.ceil(n / 12 * 1.01), people_per_org=12)
    records = [json.loads(json.dumps(p)) for p in world.people[:n]]
    del world
    table, flat_s, _ = _timed(lambda: schema.flatten_people(records))
    _, to_pd_s, _ = _timed(lambda: schema.to_pandas(table))
    _, to_pl_s, _ = _timed(lambda: pl.from_arrow(table))
    r.add("flatten_people (Arrow, shared by both)", f"{flat_s:.2f} s")
    r.add("Arrow -> pandas (to_pandas)", f"{to_pd_s:.3f} s")
    r.add("Arrow -> Polars (from_arrow)", f"{to_pl_s:.3f} s")
    cache_dir, people = _filled_cache(tmp, unique)
    frame = pd.DataFrame([people[i % unique] for i in range(n)]).sample(frac=1.0, random_state=8)
    polars_frame = pl.from_pandas(frame.reset_index(drop=True))
    sb = Sandbox(SandboxConfig(n_orgs=10))  # answers nothing useful: every row must come from the cache
    with sandbox_client(sb, cache_dir) as client:
        with_pandas, pd_s, _ = _timed(lambda: apollo_frames.enrich_people(frame, client=client, progress=False))
        with_polars, pl_s, _ = _timed(
            lambda: polars_frame.apollo.enrich_people(client=client, progress=False)
        )
    same = pl.from_pandas(with_pandas.reset_index(drop=True)).equals(with_polars)
    r.add("enrich_people, pandas frame (all cached)", f"{pd_s:.2f} s, {n / pd_s:,.0f} rows/s")
    r.add("enrich_people, Polars frame (all cached)", f"{pl_s:.2f} s, {n / pl_s:,.0f} rows/s")
    r.add("Polars / pandas time", f"{pl_s / pd_s:.2f}x")
    r.add("same columns, statuses and values", "yes" if same else "NO")
    r.note("Both run the same engine (dedupe, one cache read, Arrow answers); they differ at the edges: pandas "
           "converts the new columns once with to_pandas, Polars takes them with from_arrow.")
    return r


def bench_dask(tmp: Path, quick: bool) -> Result:
    """A Parquet dataset through ``ddf.apollo.enrich_people`` on a LocalCluster, then again on the shared cache."""
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import apollo_frames.dask  # noqa: F401  (registers ddf.apollo)

    files, copies, unique = (4, 4, 1_000) if quick else (8, 5, 4_000)
    rows = unique * copies
    r = Result(9, f"Dask: {rows:,} rows ({unique:,} people, each {copies} times) in {files} Parquet files, "
                  f"LocalCluster of 2 worker processes")
    sb = Sandbox(SandboxConfig(n_orgs=max(300, math.ceil(unique / 10.5))))
    people = [p for p in sb.world.people if p.get("email")][:unique]
    leads = pd.DataFrame([{"email": p["email"], "first_name": p["first_name"]} for p in people] * copies)
    leads = leads.sample(frac=1.0, random_state=9).reset_index(drop=True)
    src, dst = tmp / "leads", tmp / "enriched"
    src.mkdir()
    for i, part in enumerate(range(0, rows, math.ceil(rows / files))):
        leads.iloc[part:part + math.ceil(rows / files)].to_parquet(src / f"part-{i}.parquet", index=False)
    url = sb.start()
    try:
        with dask.config.set({"dataframe.convert-string": False}), \
                LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as lc, \
                Client(lc), ApolloClient(DEFAULT_API_KEY, url, cache_dir=str(tmp / "dask-cache"), plan="paid") as c:
            times = []
            for out in (dst, tmp / "again"):
                t = time.perf_counter()
                dd.read_parquet(src).apollo.enrich_people(client=c).to_parquet(out)
                times.append((time.perf_counter() - t, sb.credits_consumed, sb.count(path="people/bulk_match")))
    finally:
        sb.stop()
    result = pd.read_parquet(dst)
    (first_s, first_credits, first_calls), (again_s, again_credits, again_calls) = times
    r.add("rows in / out", f"{rows:,} / {len(result):,}")
    r.add("rows matched", f"{int((result['apollo_status'] == 'matched').sum()):,}")
    r.add("credits spent (sandbox count) / unique people", f"{first_credits:g} / {unique:,}")
    r.add("bulk calls (minimum ceil(unique / 10))", f"{first_calls} ({math.ceil(unique / 10)})")
    r.add("first run, wall", f"{first_s:.1f} s, {rows / first_s:,.0f} rows/s")
    r.add("re-run on the shared cache: credits / calls", f"{again_credits - first_credits:g} / "
                                                         f"{again_calls - first_calls}")
    r.add("re-run on the shared cache, wall", f"{again_s:.1f} s, {rows / again_s:,.0f} rows/s")
    r.note("The sandbox is served over loopback HTTP; the workers build their clients from the caller's settings "
           "and share one cache folder, one budget and one rate limit (distributed Lock + scheduler metadata). "
           "Wall times include the graph's two shuffles (rows to their key's partition, answers back to their rows).")
    return r
