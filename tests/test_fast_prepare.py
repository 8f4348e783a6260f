"""The column fast path of normalisation gives exactly what the per-value normalisers give."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from apollo_frames.core import normalize as nz
from apollo_frames.ops import people as ops_people

MESSY = [
    "bob@acme.example", "  Bob@Acme.Example ", "BOB@ACME.EXAMPLE\t", "mailto:bob@acme.example", "<bob@acme.example>",
    "Bob <bob@acme.example>", "bob@@acme.example", "bob@acme", "bob.@acme.example", ".bob@acme.example",
    "b..ob@acme.example", "bob@acme.example.", "bob @acme.example", "jöhn@acme.example", "john@äcme.example",
    "x" * 60 + "@acme.example", "a" * 70 + "@b.example", "bob@" + "a" * 64 + ".example", "bob@-acme.example",
    "bob@acme-.example", "bob@acme.c", "bob@acme.c0m", "bob@xn--acme-9oa.example", "bob+tag@acme.example",
    "o'neil@acme.example", "\"bob\"@acme.example", "bob\u200b@acme.example", "bob@acme.example\x00",
    "\x1cbob@acme.example", "bob@acme.example\x1c", "\x1c", " \t ", "", "   \n", "\x0b",
    "www.acme.example", "WWW2.Acme.Example", "https://www.acme.example/path", "acme.example", "Acme.Example",
    "sub.acme.example", "localhost", "acme..example", "ACME.EXAMPLE:8080", "a" * 250 + ".example",
    "5f1a2b3c4d5e6f7a8b9c0d1e", "5F1A2B3C4D5E6F7A8B9C0D1E", " 5f1a2b3c4d5e6f7a8b9c0d1e ", "5f1a2b3c4d5e6f7a8b9c0d1",
    "Jane", "  Jane   Doe ", "Jane\tDoe", "José", "Ｊａｎｅ", "e\u0301", "x" * 256, "x" * 257, "Jane\x7fDoe",
    "O'Brien-Smith Jr.", "~!@#$%^&*()", "a  b", "http://www.linkedin.com/in/jane",
    " Łukasz ", "Zoë  Ann", "a\u00a0b", "x\u3000y", "日本 語", "a\u2028b", "\u0301abc", "a\x85b", "Ann\u200d",
    "\ufeffAnn", "Jürgen\x1f", "é" * 256, "é" * 257,
    # e-mails near the length limits: 64 characters before the @, 253 after it
    "a" * 64 + "@acme.example", "a" * 65 + "@acme.example", "bob@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "."
    + "d" * 53 + ".example", "bob@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 54 + ".example",
]
ODD = [None, math.nan, np.nan, pd.NA, 42, 42.0, 3.5, True, b"bob@acme.example", ["x"], Decimal(1), np.int64(7),
       np.str_("bob@acme.example"), float("inf")]
KINDS = {"email": nz.normalize_email, "name": nz.normalize_name, "id": nz.normalize_apollo_id,
         None: nz.normalize_hashed_email}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("values", [MESSY, MESSY + [None, math.nan, pd.NA], MESSY + ODD], ids=["text", "nulls", "odd"])
def test_fast_path_decides_only_what_the_normaliser_would_say(kind, values):
    fast, decided = nz.normalize_fast(values, kind)
    general = [KINDS[kind](v) for v in values]
    assert len(fast) == len(decided) == len(values)
    for value, got, sure, (want, why) in zip(values, fast, decided, general, strict=True):
        if sure:
            assert (got, None) == (want, why), value
    # the fast path is not empty: well-formed text is decided a column at a time
    if kind is not None and not any(type(v) in (bytes, list, int) for v in values):
        assert sum(v is not None for v, ok in zip(fast, decided, strict=True) if ok) >= 2


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dtype", [object, "string", "str"])
def test_fast_path_on_an_arrow_column_from_pandas_agrees(kind, dtype):
    import pyarrow as pa

    values = MESSY + [None, math.nan, np.str_("Bob@Acme.example")] + ([pd.NA] if dtype != "str" else [])
    column = pa.array(pd.Series(values, dtype=dtype), from_pandas=True)
    fast, decided = nz.normalize_fast_arrays(column, kind)
    assert pc_all(decided.is_valid()) and len(fast) == len(values)
    for value, got, sure in zip(values, fast.to_pylist(), decided.to_pylist(), strict=True):
        if sure:
            assert (got, None) == KINDS[kind](value), value
    assert kind is None or sum(fast.is_valid().to_pylist()) >= 2


def pc_all(mask) -> bool:
    return all(mask.to_pylist())


@pytest.mark.parametrize("odd", [False, True])
def test_prepare_people_fast_and_general_paths_agree(odd, monkeypatch):
    rng = np.random.default_rng(12)
    pool = MESSY + [None, math.nan, ""]
    n = 400

    def column(clean: list) -> list:
        """Mostly well-formed values (which the column path decides), some of everything else."""
        return [clean[i % len(clean)] if rng.random() < 0.85 else pool[rng.integers(0, len(pool))] for i in range(n)]

    frame = pd.DataFrame({
        "Email": column([f"p{i}@acme.example" for i in range(50)] + ["BOB@ACME.EXAMPLE", None]),
        "First Name": column(["Ann", "Jürgen", " Zoë ", None]),
        "Last Name": column(["Lee", "Müller", None]),
        "Company": column(["Acme", "Acme & Sons, Ltd.", None]),
        "Domain": column([None]),
        "Person Id": column([None, None, "5F1A2B3C4D5E6F7A8B9C0D1E"]),
    })
    if odd:
        frame["Email"] = frame["Email"].astype(object)
        frame.loc[::7, "Email"] = 12  # an odd type in a column sends its rows the general way
    general_rows = []
    person_record = ops_people.person_record
    monkeypatch.setattr(ops_people, "person_record", lambda values: general_rows.append(1) or person_record(values))
    prepared = ops_people.prepare_people(frame)
    monkeypatch.undo()
    assert odd or 0 < len(general_rows) < n - 50  # both paths are taken
    series = prepared.columns.values(frame)
    general = [ops_people.person_record({f: series[f][i] for f in series}) for i in range(n)]
    assert prepared.records == [g[0] for g in general]
    assert prepared.identities == [g[1] for g in general]
    assert prepared.reasons == [g[2] for g in general]
    from apollo_frames.core.entries import canonical_json
    given = prepared.identity_texts
    pairs = zip(given if isinstance(given, list) else given.to_pylist(), prepared.identities, strict=True)
    texts = [(t, canonical_json(i)) for t, i in pairs if t is not None]
    assert (odd or texts) and all(t == want for t, want in texts)
    assert sum(r is not None for r in prepared.records) > 50  # the table holds valid rows, not only garbage


def test_prepare_people_clean_frame_uses_the_column_path(monkeypatch):
    frame = pd.DataFrame({"email": [f"p{i}@acme.example" for i in range(50)], "first_name": ["Ann"] * 50})
    calls = []
    monkeypatch.setattr(ops_people, "person_record", lambda values: calls.append(values))
    prepared = ops_people.prepare_people(frame)
    assert calls == []
    monkeypatch.undo()
    general = [ops_people.person_record({"email": e, "first_name": "Ann"}) for e in frame["email"]]
    assert (prepared.records, prepared.identities, prepared.reasons) == tuple(map(list, zip(*general, strict=True)))
    assert prepared.identities[3] == {"email": "p3@acme.example"}
    assert prepared.records[3] == {"email": "p3@acme.example", "first_name": "Ann"}
