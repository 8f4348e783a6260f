"""Answer store micro-benchmarks: block reads vs one get per key, value encodings, key functions.

    python -m benchmarks.store [--n 100000]

Side by side in one process (the machine may be shared: compare the ratios).
"one get per key" is how the store was read up to schema version 1 (then a ``diskcache.Cache``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import tempfile
import time
from pathlib import Path

from apollo_frames.client.store import AnswerStore
from apollo_frames.core.entries import canonical_json
from apollo_frames.sandbox import Sandbox, SandboxConfig


def _records(n: int) -> list[dict]:
    """n distinct person answers shaped like the sandbox's (about 5 KB of JSON each)."""
    sb = Sandbox(SandboxConfig(seed=3, n_orgs=300))
    with tempfile.TemporaryDirectory() as tmp, sb.client(cache_dir=tmp) as client:
        people = [p for p in sb.world.people if p.get("email")][:200]
        answer = client.post("people/bulk_match", json={"details": [{"email": p["email"]} for p in people[:10]]})
        base = [m for m in answer.data["matches"] if m]
    return [{**base[i % len(base)], "id": f"p{i:07d}", "email": f"person{i}@example.com"} for i in range(n)]


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_reads(n: int, folder: Path) -> None:
    records = _records(n)
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    store = AnswerStore(folder / "new")
    for start in range(0, n, 1000):
        store.set_many(dict(zip(keys[start:start + 1000], records[start:start + 1000], strict=True)), ttl=None)

    def one_by_one():
        found = {k: store.get_many([k]).get(k) for k in keys}
        assert len(found) == n

    def get_many():
        found = {}
        for start in range(0, n, 1000):
            found.update(store.get_many(keys[start:start + 1000]))
        assert len(found) == n

    def sql_per_key():
        for k in keys:
            store.query("SELECT rowid, key, value, stored_at, expires_at FROM Answers WHERE key = ?", (k,))

    def sql_per_block():
        for start in range(0, n, 900):
            block = keys[start:start + 900]
            store.query(f"SELECT rowid, key, value, stored_at, expires_at FROM Answers WHERE key IN "
                        f"({','.join('?' * len(block))})", block)

    before, after = _best(one_by_one, 2), _best(get_many, 2)
    sql_before, sql_after = _best(sql_per_key, 2), _best(sql_per_block, 2)
    print(f"reads of {n:,} keys (~5 KB answers): one get per key {before:.2f} s, "
          f"get_many (JSON checked, one query per 900 keys) {after:.2f} s, ratio {before / after:.2f}x")
    print(f"  SQL alone: one query per key {sql_before:.2f} s, one query per 900 keys {sql_after:.2f} s "
          f"({sql_before / sql_after:.1f}x); the rest is decoding the answers")
    store.close()


def bench_keys(n: int) -> None:
    identities = [{"email": f"person{i}@example.com", "first_name": "Ann", "last_name": f"Lee{i}"} for i in range(n)]
    ns, endpoint = "https://api.apollo.io/api/v1", "people/bulk_match"

    def texts():
        return [canonical_json([2, ns, endpoint, r, {}]) for r in identities]

    t_json = _best(texts)
    encoded = [t.encode() for t in texts()]
    t_sha = _best(lambda: [hashlib.sha256(b).hexdigest() for b in encoded])
    t_blake = _best(lambda: [hashlib.blake2b(b, digest_size=16).hexdigest() for b in encoded])
    t_plain = _best(lambda: [f"{r['email']}|{r['first_name']}|{r['last_name']}" for r in identities])
    print(f"keys for {n:,} identities: canonical JSON {t_json:.3f} s + sha256 {t_sha:.3f} s "
          f"(blake2b-128 {t_blake:.3f} s); the identity itself as text {t_plain:.3f} s")


def bench_encodings(n: int) -> None:
    records = _records(min(n, 10_000))
    for name, enc, dec in (
        ("json", lambda r: json.dumps({"v": 2, "k": "k" * 64, "d": r}, separators=(",", ":")).encode(), json.loads),
        ("pickle", lambda r: pickle.dumps(r, 5), pickle.loads),
    ):
        blobs = [enc(r) for r in records]
        t_enc = _best(lambda enc=enc: [enc(r) for r in records])
        t_dec = _best(lambda dec=dec, blobs=blobs: [dec(b) for b in blobs])
        print(f"{name:7s} {len(records):,} person answers: encode {t_enc * 1e3:.0f} ms, decode {t_dec * 1e3:.0f} ms, "
              f"{sum(map(len, blobs)) / len(blobs):,.0f} B each")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bench_encodings(args.n)
        bench_keys(args.n)
        bench_reads(args.n, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
