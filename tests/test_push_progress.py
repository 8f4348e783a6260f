"""A streaming push's progress moves with each answered request, not once per chunk (issue 14, item 7)."""

from __future__ import annotations

import re

import pandas as pd

import apollo_frames as af
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import Sandbox, SandboxConfig

LINE = re.compile(r"push_contacts: ([\d,]+)(?:/([\d,]+))? rows.*?, ([\d,]+) requests, ([\d,]+) errors")


def contacts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"Email": [f"p{i}@progress{i % 5}.example" for i in range(n)],
                         "First Name": [f"F{i}" for i in range(n)], "Last Name": [f"L{i}" for i in range(n)]})


def progress_lines(err: str) -> list[tuple[int, int]]:
    """(rows, requests) of each progress line."""
    found = [LINE.match(line) for line in err.splitlines()]
    return [(int(m.group(1).replace(",", "")), int(m.group(3).replace(",", ""))) for m in found if m]


def test_a_push_in_one_chunk_logs_rows_and_requests_as_they_are_answered(tmp_path, capsys):
    src = tmp_path / "people.csv"
    contacts(1000).to_csv(src, index=False)
    sandbox = Sandbox(SandboxConfig(seed=3, n_orgs=50))
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=1) as client:
        af.push_parquet(src, dst=tmp_path / "r.parquet", target="contacts", client=client, log_every=0)
    err = capsys.readouterr().err
    seen = progress_lines(err)
    # one chunk of 1,000 rows, 10 bulk calls: a line for each answered call, then the last line
    assert [requests for _, requests in seen] == list(range(1, 11)) + [10]
    assert [rows for rows, _ in seen] == list(range(100, 1001, 100)) + [1000]
    assert all("ETA" in line for line in err.splitlines() if line.startswith("push_contacts: ") and "/" in line)


def test_without_a_terminal_a_line_every_few_seconds_on_the_clock_given(tmp_path, capsys):
    src = tmp_path / "people.csv"
    contacts(1200).to_csv(src, index=False)
    clock = FakeClock()  # the sandbox's latency moves it: 2 s per request, never slept for real
    sandbox = Sandbox(SandboxConfig(seed=3, n_orgs=50, latency=2.0), clock=clock)
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=1, clock=clock) as client:
        af.push_parquet(src, dst=tmp_path / "r.parquet", target="contacts", client=client, log_every=5)
    seen = progress_lines(capsys.readouterr().err)
    # 12 requests 2 s apart, a line once 5 s have passed since the last: after requests 3, 6, 9, 12, then the last
    assert [requests for _, requests in seen] == [3, 6, 9, 12, 12]
    assert clock.monotonic() - 1000.0 >= 24  # the time came from the fake clock (12 x 2 s)


class FakeBar:
    """Records what a progress bar was told."""

    def __init__(self, **kwargs):
        self.updates: list[int] = []
        self.postfixes: list[dict] = []
        self.leave = True
        self.closed = False

    def update(self, n):
        self.updates.append(n)

    def set_postfix(self, counts):
        self.postfixes.append(dict(counts))

    def close(self):
        self.closed = True


def test_on_a_terminal_the_bar_moves_per_request_and_shows_the_requests(tmp_path, monkeypatch):
    from apollo_frames.io import stream

    bars: list[FakeBar] = []
    monkeypatch.setattr(stream, "interactive", lambda s=None: True)
    monkeypatch.setattr(stream, "progress_bar", lambda **kw: bars.append(FakeBar(**kw)) or bars[-1])
    src = tmp_path / "people.parquet"
    contacts(450).to_parquet(src)
    sandbox = Sandbox(SandboxConfig(seed=3, n_orgs=50))
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=1) as client:
        af.push_parquet(src, dst=tmp_path / "r.parquet", target="contacts", client=client)
    (bar,) = bars
    assert bar.updates == [100, 100, 100, 100, 50] and bar.closed and bar.leave
    assert [p["requests"] for p in bar.postfixes] == ["1", "2", "3", "4", "5", "5"]
