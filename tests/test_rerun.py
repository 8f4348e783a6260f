"""The cached re-run's column forms: records kept as columns, dedupe by columns, the whole-block read."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames.engine import runner
from apollo_frames.engine.records import ColumnRecords
from apollo_frames.ops.people import person_record, prepare_people


def test_column_records_read_like_the_list_they_stand_for():
    columns = {"email": pa.array(["a@x.example", "b@x.example", None]), "first_name": pa.array(["Ann", None, "Cy"])}
    records = ColumnRecords(columns)
    as_list = [{"email": "a@x.example", "first_name": "Ann"}, {"email": "b@x.example"}, {"first_name": "Cy"}]
    assert records == as_list and list(records) == as_list and len(records) == 3
    assert records[-1] == as_list[-1] and records[0:2] == as_list[0:2]
    records[1] = None
    records[-1] = {"email": "c@x.example"}
    assert records == [as_list[0], None, {"email": "c@x.example"}] and records.none_rows() == [1]
    assert records.pick([2, 1, 0]) == [{"email": "c@x.example"}, None, as_list[0]]
    assert records != as_list and records != [as_list[0], None]
    with pytest.raises(IndexError):
        records[3]
    with pytest.raises(TypeError):
        records.append({})
    with pytest.raises(TypeError):
        del records[0]


def test_a_clean_frame_is_prepared_as_columns_that_read_as_the_per_row_rule():
    frame = pd.DataFrame({"Email": [f" P{i}@Acme.example" for i in range(30)] + ["p3@acme.example"],
                          "First Name": ["Ann", "Zoë"] * 15 + ["Al"]})
    prepared = prepare_people(frame)
    assert isinstance(prepared.records, ColumnRecords) and prepared.fields is not None
    general = [person_record({"email": e, "first_name": n}) for e, n in zip(frame["Email"], frame["First Name"],
                                                                               strict=True)]
    assert prepared.records == [g[0] for g in general] and prepared.identities == [g[1] for g in general]
    row_unique, first_rows, texts = runner.dedupe(prepared)
    assert row_unique[30] == row_unique[3] == 3 and len(first_rows) == len(texts) == 30
    assert texts.to_pylist()[3] == '{"email":"p3@acme.example"}'
    prepared.records[5] = prepared.identities[5] = None  # as a streaming run marks a malformed line
    row_unique, first_rows, texts = runner.dedupe(prepared)
    assert row_unique[5] == -1 and 5 not in first_rows and len(texts) == 29


def test_dedupe_numbers_records_in_order_of_first_appearance():
    prepared = runner.Prepared([{"email": e} if e else None for e in "b a b c a".split() + [""]],
                               [{"email": e} if e else None for e in "b a b c a".split() + [""]],
                               [None] * 5 + ["no identifier"])
    row_unique, first_rows, texts = runner.dedupe(prepared)
    assert row_unique == [0, 1, 0, 2, 1, -1] and first_rows == [0, 1, 3]
    assert texts.to_pylist() == ['{"email":"b"}', '{"email":"a"}', '{"email":"c"}']


def test_a_rerun_reads_only_copies_and_gives_what_the_first_run_gave(sandbox, tmp_path, monkeypatch):
    from apollo_frames.client.store import AnswerStore

    people = [p for p in sandbox.world.people if p.get("email")][:25]
    frame = pd.DataFrame({"email": [p["email"] for p in people] + ["nobody@nowhere-at-all.example"]})
    monkeypatch.setattr(runner, "READ_BLOCK", 10)
    with sandbox.client(cache_dir=tmp_path) as client:
        first = af.enrich_people(frame, client=client, progress=False)
        raw_reads = []
        original = AnswerStore.get_many
        monkeypatch.setattr(AnswerStore, "get_many",
                            lambda self, keys, **kw: raw_reads.extend(keys) or original(self, keys, **kw))
        again = af.enrich_people(frame, client=client, progress=False)
    assert raw_reads == []  # every row came from its flattened copy
    pd.testing.assert_frame_equal(answers(again), answers(first))
    assert again.attrs["apollo"]["cache_hits"] == 26 and again.attrs["apollo"]["api_calls"] == 0


def test_store_keys_of_an_arrow_array_of_texts_are_the_keys_of_the_same_texts_as_a_list():
    from apollo_frames.core.entries import canonical_json, entry_key, entry_keys

    identities = [{"email": "a@b.example"}, {"email": "zoë@b.example"}, {"first_name": "Ann", "domain": "b.example"}]
    texts = [canonical_json(i) for i in identities]
    for options in ({}, {"reveal_personal_emails": True}):
        by_list = entry_keys("ns", "people/bulk_match", texts, options)
        assert entry_keys("ns", "people/bulk_match", pa.array(texts, pa.string()), options) == by_list
        assert entry_keys("ns", "people/bulk_match", pa.array(texts, pa.large_string()), options) == by_list
        assert by_list == [entry_key("ns", "people/bulk_match", i, options) for i in identities]


def test_the_column_path_of_prepare_writes_the_identity_texts_canonical_json_writes():
    from apollo_frames.core.entries import canonical_json

    frame = pd.DataFrame({"email": [f" P{i}@Acme.example" for i in range(20)] + ["x@y.example"]})
    prepared = prepare_people(frame)
    assert isinstance(prepared.identity_texts, pa.Array)
    assert prepared.identity_texts.to_pylist() == [canonical_json(i)
                                                    for i in prepared.identities]
