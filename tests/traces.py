"""Helpers for tests that look for personal data: every byte of a folder, the flattened copies decoded, the
request bodies a sandbox received, and a one-pass search of them for people's identifiers."""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa

from apollo_frames.client.store import AnswerStore


def all_bytes(folder) -> bytes:
    """Every byte of every file under ``folder`` (databases, their -wal/-shm/-journal files, set-aside copies)."""
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def flat_text(cache) -> str:
    """Every value of every flattened block, decoded (the blocks are compressed: bytes alone would not show them)."""
    store = AnswerStore(cache)
    try:
        blocks = store.query("SELECT data FROM FlatBlocks")
    finally:
        store.close()
    tables = [pa.ipc.open_stream(pa.py_buffer(data)).read_all() for (data,) in blocks]
    return " ".join(str(t.to_pylist()) for t in tables)


class Recorder:
    """A WSGI middleware keeping every request body the app below it received (to search them for identifiers)."""

    def __init__(self, app):
        self.app, self.bodies = app, []

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.bodies.append(body)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def sent(self) -> bytes:
        return b"\n".join(self.bodies)


_AT = re.compile(rb"@([a-z0-9.-]+)")
#: which bytes are lower-case hex digits
_HEXDIGIT = np.zeros(256, dtype=bool)
_HEXDIGIT[list(b"0123456789abcdef")] = True
_CHUNK = 1 << 25
_SLUG = re.compile(rb"linkedin\.com/in/([^\s\"'<>\\]+)")


def named(data: bytes, people: list[dict]) -> set[str]:
    """Which of the people's e-mails, LinkedIn URLs and ids occur in ``data``, ignoring case (a substring search of
    each, made in one pass: hundreds of MB searched once per value would take minutes). An e-mail is found at each
    ``@`` whose text before ends with its local part and whose text after starts with its domain; a LinkedIn URL
    by its ``/in/`` name (at the start of the text after ``linkedin.com/in/``); an id in any run of hex digits."""
    emails: dict[bytes, set[bytes]] = {}
    slugs, ids = {}, {}
    for p in people:
        local, _, domain = p["email"].lower().encode().partition(b"@")
        emails.setdefault(domain, set()).add(local)
        if p.get("linkedin_url"):
            slugs[p["linkedin_url"].lower().rstrip("/").rsplit("/in/", 1)[1].encode()] = p["linkedin_url"]
        ids[p["id"].lower().encode()] = p["id"]
    data = data.lower()
    found = set()
    for hit in _AT.finditer(data):
        after, before = hit.group(1), data[max(0, hit.start() - 80):hit.start()]
        for n in range(1, len(after) + 1):
            for local in emails.get(after[:n], ()):
                if before.endswith(local):
                    found.add((local + b"@" + after[:n]).decode())
    for hit in _SLUG.finditer(data):
        slug = hit.group(1)
        found.update(url for n in range(1, len(slug) + 1) if (url := slugs.get(slug[:n])))
    for run in _hex_runs(data, 24):
        found.update(ids[run[i:i + 24]] for i in range(len(run) - 23) if run[i:i + 24] in ids)
    return found


def _hex_runs(data: bytes, shortest: int) -> set[bytes]:
    """The distinct runs of at least ``shortest`` hex digits in ``data`` (by chunks that overlap, so every window
    of ``shortest`` digits lies whole in one run found; a regular expression takes seconds per 100 MB here)."""
    runs: set[bytes] = set()
    for start in range(0, len(data), _CHUNK):
        piece = data[start:start + _CHUNK + 2 * shortest]
        mask = np.concatenate(([False], _HEXDIGIT[np.frombuffer(piece, dtype=np.uint8)], [False]))
        edges = np.flatnonzero(mask[1:] != mask[:-1])
        begins, ends = edges[::2], edges[1::2]
        long = ends - begins >= shortest
        runs.update(piece[b:e] for b, e in zip(begins[long].tolist(), ends[long].tolist(), strict=True))
    return runs
