"""Pushing contacts and accounts to the sandbox: modes, validation, duplicates, lost writes, stops, CLI."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames import ApolloClient
from apollo_frames.cli import main
from apollo_frames.core.errors import AuthenticationError, PermissionDeniedError
from apollo_frames.ops.push import PUSH_STATUSES, push_accounts, push_contacts
from apollo_frames.sandbox import (
    DEFAULT_API_KEY,
    SCOPED_API_KEY,
    Sandbox,
    SandboxConfig,
    client_for,
)


def contacts_frame(n, start=0, title="Analyst", prefix="r"):
    rows = [
        {
            "Email": f"  Person{i}@Push{i % 7}.example ",
            "First Name": f"First{i}",
            "Last Name": f"Last{i}",
            "Title": title,
            "Company": f"Push {i % 7} Inc",
        }
        for i in range(start, start + n)
    ]
    return pd.DataFrame(rows, index=[f"{prefix}{i}" for i in range(start, start + n)])


def accounts_frame(n, start=0, industry="software"):
    rows = [{"Website": f"https://www.acct{i}.example/about", "Company": f"Acct {i}", "Industry": industry}
            for i in range(start, start + n)]
    return pd.DataFrame(rows, index=range(start, start + n))


def store_keys(records, field):
    return Counter(str(r.get(field) or "").strip().lower() for r in records.values())


def assert_each_once(sandbox, frame_keys, kind="contacts"):
    field = "email" if kind == "contacts" else "domain"
    counts = store_keys(getattr(sandbox.store, kind), field)
    assert all(counts[k] == 1 for k in frame_keys), {k: counts[k] for k in frame_keys if counts[k] != 1}
    assert max(counts.values(), default=0) <= 1


def age_store(sandbox, kind="contacts", when="2025-01-01T00:00:00.000Z"):
    """Make every stored record look created long ago (as records from before a push would be)."""
    with sandbox.store.lock:
        for record in getattr(sandbox.store, kind).values():
            record["created_at"] = when


def push(frame, client, **kw):
    kw.setdefault("progress", False)
    return frame.apollo.push_contacts(client=client, **kw)


@pytest.fixture
def fast_client_factory(tmp_path):
    made = []

    def make(sandbox, **kw):
        kw.setdefault("cache_dir", tmp_path / "cache")
        kw.setdefault("retry_backoff", (0.001, 0.005))
        client = sandbox.client(**kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# -- insert ---------------------------------------------------------------------------------------


def test_insert_batches_of_100_and_joins_by_email_not_position(sandbox, client):
    earlier = push(contacts_frame(30, start=100, title="Old title"), client, mode="insert")
    assert (earlier["apollo_status"] == "created").all()
    calls_before = sandbox.count(path="contacts/bulk_create")

    frame = contacts_frame(250, title="New title")  # rows 100..129 exist already
    before = frame.copy(deep=True)
    result = push(frame, client, mode="insert")

    pd.testing.assert_frame_equal(frame, before)
    assert list(result.index) == list(frame.index)
    pd.testing.assert_frame_equal(result[frame.columns], frame)
    assert sandbox.count(path="contacts/bulk_create") - calls_before == 3
    existing = [f"r{i}" for i in range(100, 130)]
    assert (result.loc[existing, "apollo_status"] == "existing").all()
    assert (result.drop(index=existing)["apollo_status"] == "created").all()
    by_email = {r["email"]: r for r in sandbox.store.contacts.values()}
    for label, row in result.iterrows():
        record = by_email[row["Email"].strip().lower()]
        assert row["apollo_id"] == record["id"]
    # existing ones come back unmodified
    assert by_email["person100@push2.example"]["title"] == "Old title"
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])
    stats = result.attrs["apollo"]
    assert stats["created"] == 220 and stats["existing"] == 30 and stats["sent"] == 250
    assert stats["bulk_calls"] == 3 and stats["api_calls"] == 3 and stats["errors"] == 0


def test_validation_and_duplicates_are_reported_not_sent(sandbox, client):
    frame = pd.DataFrame(
        {
            "email": ["A@One.example", "a@one.example ", "not an email", None, "b@two.example", "c@three.example"],
            "first_name": ["A", "A again", "Bad", "NoMail", "B", "C"],
            "linkedin_url": [None, None, None, None, None, "https://example.com/not-linkedin"],
            "phone": ["(415) 555-0100", None, None, None, "+44 20 7946 0958", None],
        },
        index=["first", "again", "bad", "blank", "uk", "badli"],
    )
    result = push(frame, client, mode="insert")
    status = result["apollo_status"].to_dict()
    assert status == {"first": "created", "again": "duplicate", "bad": "invalid", "blank": "invalid",
                      "uk": "created", "badli": "invalid"}
    assert result.loc["again", "apollo_id"] == result.loc["first", "apollo_id"]
    assert "'first'" in result.loc["again", "apollo_error"]
    assert "invalid email" in result.loc["bad", "apollo_error"]
    assert "no email" in result.loc["blank", "apollo_error"]
    assert "LinkedIn" in result.loc["badli", "apollo_error"]
    emails = sorted(r["email"] for r in sandbox.store.contacts.values())
    assert emails == ["a@one.example", "b@two.example"]
    sent = {r["email"]: r for r in sandbox.store.contacts.values()}
    phones = json.dumps(sent["a@one.example"]) + json.dumps(sent["b@two.example"])
    assert "+14155550100" in phones and "+442079460958" in phones
    assert result.attrs["apollo"]["invalid"] == 3 and result.attrs["apollo"]["duplicate"] == 1


def test_unmapped_columns_warned_once_and_overrides(sandbox, client):
    frame = pd.DataFrame({"Mail": ["x@map.example"], "Score": [7], "Notes": ["n"], "Other": [1],
                          "custom.abc123": ["gold"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = push(frame, client, mode="insert", columns={"Mail": "email", "Score": "custom.score_id"})
    messages = [str(w.message) for w in caught if "not pushed" in str(w.message)]
    assert len(messages) == 1 and "'Notes'" in messages[0] and "'Other'" in messages[0]
    assert result.iloc[0]["apollo_status"] == "created"
    record = sandbox.store.contacts[result.iloc[0]["apollo_id"]]
    assert record["typed_custom_fields"] == {"score_id": 7, "abc123": "gold"}
    with pytest.raises(ValueError, match="not an Apollo contact field"):
        push(frame, client, columns={"Mail": "e_mail"})


# -- update and upsert ----------------------------------------------------------------------------


def test_upsert_creates_then_bulk_updates_existing_once_each(sandbox, client):
    push(contacts_frame(40, start=0, title="Old title"), client, mode="insert")
    frame = contacts_frame(150, start=20, title="New title")  # 20..39 exist
    result = push(frame, client, mode="upsert")
    updated = [f"r{i}" for i in range(20, 40)]
    assert (result.loc[updated, "apollo_status"] == "updated").all()
    assert (result.drop(index=updated)["apollo_status"] == "created").all()
    stats = result.attrs["apollo"]
    assert stats["bulk_calls"] == 2 and stats["bulk_update_calls"] == 1 and stats["update_calls"] == 0
    assert stats["api_calls"] == 3
    assert sandbox.count(path="contacts/bulk_update", status=200) == 1 and sandbox.count(path="contacts/{id}") == 0
    assert [r.n_records for r in sandbox.requests if r.path == "contacts/bulk_update"] == [20]
    for label in updated:
        assert sandbox.store.contacts[result.loc[label, "apollo_id"]]["title"] == "New title"
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])


def test_update_mode_needs_ids(sandbox, client):
    created = push(contacts_frame(5), client, mode="insert")
    frame = pd.DataFrame(
        {"id": list(created["apollo_id"]) + [None, "0123456789abcdef01234567"],
         "title": ["CTO"] * 7, "Email": [None] * 7},
        index=list("abcdefg"),
    )
    frame.loc["b", "id"] = frame.loc["a", "id"]  # the same record twice
    result = push(frame, client, mode="update")
    assert result.loc["a", "apollo_status"] == "updated"
    assert result.loc["b", "apollo_status"] == "duplicate" and "'a'" in result.loc["b", "apollo_error"]
    assert (result.loc[list("cde"), "apollo_status"] == "updated").all()
    assert result.loc["f", "apollo_status"] == "invalid" and "no Apollo contact id" in result.loc["f", "apollo_error"]
    assert result.loc["g", "apollo_status"] == "error" and "0123456789abcdef01234567" in result.loc["g", "apollo_error"]
    for label in "acde":
        assert sandbox.store.contacts[result.loc[label, "apollo_id"]]["title"] == "CTO"
    assert sandbox.count(path="contacts/bulk_create") == 1  # only the insert above


def test_labels_and_phones_on_create_and_update(sandbox, client):
    frame = contacts_frame(4)
    frame["Labels"] = ["vip; new", None, None, "vip,new"]
    frame["Phone"] = ["415 555 0100", None, None, None]
    result = push(frame, client, mode="insert", labels=["q3"])
    assert sandbox.count(path="contacts/bulk_create") == 2  # one batch per label set
    names = {row["apollo_id"]: {l["name"] for l in sandbox.store.labels_of(sandbox.store.contacts[row["apollo_id"]])}
             for _, row in result.iterrows()}
    assert [names[i] for i in result["apollo_id"]] == [{"q3", "vip", "new"}, {"q3"}, {"q3"}, {"q3", "vip", "new"}]
    assert sandbox.store.contacts[result.iloc[0]["apollo_id"]]["phone"] == "+14155550100"

    update = pd.DataFrame({"id": result["apollo_id"].iloc[:2], "label_names": [["gold"], None],
                           "phone": ["+44 20 7946 0958", None]})
    done = push(update, client, mode="update", labels=["q4"])
    assert set(done["apollo_status"]) == {"updated"}
    first = sandbox.store.contacts[result.iloc[0]["apollo_id"]]
    assert {l["name"] for l in sandbox.store.labels_of(first)} == {"gold", "q4"}  # label_names replaces the set
    assert first["direct_phone"] == "+442079460958"
    second = sandbox.store.contacts[result.iloc[1]["apollo_id"]]
    assert {l["name"] for l in sandbox.store.labels_of(second)} == {"q3"}  # no label column: labels untouched


# -- dry run --------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_returns_the_plan(sandbox, client):
    frame = contacts_frame(120)
    frame.loc["r5", "Email"] = "broken"
    frame.loc["r6", "Email"] = frame.loc["r7", "Email"]
    before = sandbox.count()
    requests = client.stats.requests
    result = push(frame, client, mode="upsert", dry_run=True, labels=["q3 push"])
    assert sandbox.count() == before and client.stats.requests == requests
    assert result.loc["r5", "apollo_status"] == "invalid" and result.loc["r6", "apollo_status"] == "would_create"
    assert result.loc["r7", "apollo_status"] == "duplicate"
    assert set(result["apollo_status"]) == {"would_create", "invalid", "duplicate"}
    payload = json.loads(result.loc["r0", "apollo_payload"])
    assert payload["record"]["email"] == "person0@push0.example" and payload["append_label_names"] == ["q3 push"]
    stats = result.attrs["apollo"]
    assert stats["planned_requests"] == 2 and stats["planned_requests_max"] == 2 + math.ceil(118 / 100)
    assert stats["api_calls"] == 0
    upd = push(pd.DataFrame({"apollo_id": ["a" * 24], "title": ["CEO"]}), client, mode="update", dry_run=True)
    assert upd.iloc[0]["apollo_status"] == "would_update"
    assert json.loads(upd.iloc[0]["apollo_payload"]) == {"path": "contacts/bulk_update",
                                                         "record": {"id": "a" * 24, "title": "CEO"}}
    phone_only = pd.DataFrame({"apollo_id": ["a" * 24], "Phone": ["+14155550100"]})
    patched = push(phone_only, client, mode="update", dry_run=True)
    assert json.loads(patched.iloc[0]["apollo_payload"]) == {"method": "PATCH", "path": "contacts/" + "a" * 24,
                                                             "body": {"direct_phone": "+14155550100"}}
    assert sandbox.count() == before


# -- lost writes and retries ----------------------------------------------------------------------


def test_scripted_lost_write_is_retried_with_run_dedupe_and_reported_created(sandbox, client):
    sandbox.inject("lost_write", path="contacts/bulk_create")
    frame = contacts_frame(150)
    result = push(frame, client, mode="upsert")
    assert (result["apollo_status"] == "created").all(), result["apollo_status"].value_counts()
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])
    assert sandbox.count(path="contacts/bulk_create", status=200) == 2
    assert sandbox.count(path="contacts/{id}") == 0  # our own lost write is not PATCHed again
    assert result.attrs["apollo"]["api_calls"] == 3


def test_lost_write_retry_tells_our_records_from_older_ones(sandbox, fast_client_factory):
    client = fast_client_factory(sandbox, concurrency=1)
    push(contacts_frame(10, title="Old"), client, mode="insert")
    age_store(sandbox)
    sandbox.inject("lost_write", path="contacts/bulk_create")
    result = push(contacts_frame(50, title="New"), client, mode="upsert")
    assert (result.iloc[:10]["apollo_status"] == "updated").all()  # existed before: updated
    assert (result.iloc[10:]["apollo_status"] == "created").all()  # written by the lost attempt: created
    assert sandbox.count(path="contacts/bulk_create") == 1 + 2
    assert [r.n_records for r in sandbox.requests if r.path == "contacts/bulk_update"] == [10]  # the 10 older ones only
    assert_each_once(sandbox, [f"person{i}@push{i % 7}.example" for i in range(50)])


def test_lost_write_without_run_dedupe_is_not_resent(sandbox, fast_client_factory):
    client = fast_client_factory(sandbox, concurrency=1)  # so the scripted fault hits the first batch
    sandbox.inject("lost_write", path="contacts/bulk_create")
    frame = contacts_frame(150)
    result = push(frame, client, mode="insert", run_dedupe=False)
    assert set(result.iloc[:100]["apollo_status"]) == {"error"}
    assert set(result.iloc[100:]["apollo_status"]) == {"created"}
    errors = result.loc[result["apollo_status"] == "error", "apollo_error"]
    assert errors.str.contains("outcome unknown").all() and errors.str.contains("run_dedupe=True").all()
    assert errors.str.contains("search contacts by email").all()
    assert sandbox.count(path="contacts/bulk_create") == 2  # no resend
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])  # the lost write committed once
    assert result.attrs["apollo"]["errors"] == 100


@pytest.mark.parametrize("run_dedupe", [True, False])
def test_timeout_over_loopback(tmp_path, run_dedupe):
    sandbox = Sandbox(SandboxConfig(seed=11, n_orgs=100, timeout_fault_seconds=1.0))
    sandbox.inject("timeout", path="contacts/bulk_create")
    with sandbox.serve() as base_url:
        with ApolloClient(api_key=DEFAULT_API_KEY, base_url=base_url, cache_dir=tmp_path / "c", timeout=0.3,
                          concurrency=1, retry_backoff=(0.001, 0.005)) as client:
            result = push(contacts_frame(120), client, mode="insert", run_dedupe=run_dedupe)
    counts = result["apollo_status"].value_counts().to_dict()
    if run_dedupe:
        assert counts == {"created": 120}  # the timed-out batch was resent
    else:
        assert counts == {"error": 100, "created": 20}
        assert result["apollo_error"].dropna().str.contains("outcome unknown").all()
    counts = store_keys(sandbox.store.contacts, "email")
    assert max(counts.values()) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_faults_never_duplicate_and_count_writes(fast_client_factory, seed):
    sandbox = Sandbox(SandboxConfig(seed=11, n_orgs=300, lost_write_rate=0.25, error_rate=0.2, fault_seed=seed))
    client = fast_client_factory(sandbox, max_retries=12)
    seeded = push(contacts_frame(60, start=200, title="Old"), client, mode="insert")
    assert set(seeded["apollo_status"]) == {"created"}
    age_store(sandbox)
    bulk_ok, upd_ok = sandbox.count(path="contacts/bulk_create", status=200), sandbox.count(path="contacts/{id}", status=200)

    frame = pd.concat([contacts_frame(260, start=0, title="New"), contacts_frame(5, start=0, prefix="dup")])
    result = push(frame, client, mode="upsert")
    assert result["apollo_status"].notna().all() and set(result["apollo_status"]) <= set(PUSH_STATUSES)
    stats = result.attrs["apollo"]
    assert stats["duplicate"] == 5 and stats["errors"] == 0 and stats["sent"] == 260
    assert sandbox.count(path="contacts/bulk_create", status=200) - bulk_ok == math.ceil(260 / 100)
    # every existing record updated by one answered bulk_update (a lost answer is resent: same fields)
    answered = [r.n_records for r in sandbox.requests if r.path == "contacts/bulk_update" and r.status == 200]
    assert sum(answered) == stats["updated"] and sandbox.count(path="contacts/{id}", status=200) == upd_ok
    # rows 200..259 existed before the run: even in a batch that needed retries they are not "ours"
    assert (result.loc[[f"r{i}" for i in range(200, 260)], "apollo_status"] == "updated").all()
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])


@pytest.mark.parametrize("seed", [4, 5])
def test_random_faults_without_dedupe_error_but_never_duplicate(fast_client_factory, seed):
    sandbox = Sandbox(SandboxConfig(seed=11, n_orgs=300, lost_write_rate=0.3, error_rate=0.3, fault_seed=seed))
    client = fast_client_factory(sandbox, max_retries=12)
    frame = contacts_frame(400)
    result = push(frame, client, mode="insert", run_dedupe=False)
    assert set(result["apollo_status"]) <= {"created", "error"}
    counts = store_keys(sandbox.store.contacts, "email")
    assert max(counts.values()) == 1
    created = result[result["apollo_status"] == "created"]
    assert all(counts[e.strip().lower()] == 1 for e in created["Email"])


# -- accounts -------------------------------------------------------------------------------------


def test_accounts_upsert_by_domain(sandbox, client):
    first = push_accounts(accounts_frame(10, industry="old"), mode="insert", client=client, progress=False)
    assert (first["apollo_status"] == "created").all()
    frame = accounts_frame(30, industry="new")
    result = frame.apollo.push_accounts(client=client, progress=False)
    assert (result.loc[range(10), "apollo_status"] == "updated").all()
    assert (result.loc[range(10, 30), "apollo_status"] == "created").all()
    by_domain = {r["domain"]: r for r in sandbox.store.accounts.values()}
    assert by_domain["acct3.example"]["id"] == result.loc[3, "apollo_id"]
    assert_each_once(sandbox, [f"acct{i}.example" for i in range(30)], kind="accounts")


def test_accounts_with_random_faults_exist_once(fast_client_factory):
    sandbox = Sandbox(SandboxConfig(seed=11, n_orgs=300, lost_write_rate=0.3, error_rate=0.2, fault_seed=9))
    client = fast_client_factory(sandbox, max_retries=12)
    push_accounts(accounts_frame(50, industry="old"), mode="insert", client=client, progress=False)
    age_store(sandbox, "accounts")
    updates_before = sandbox.count(path="accounts/{id}", status=200)
    result = push_accounts(accounts_frame(230, industry="new"), client=client, progress=False)
    assert (result.loc[range(50), "apollo_status"] == "updated").all()
    assert (result.loc[range(50, 230), "apollo_status"] == "created").all()
    answered = [r.n_records for r in sandbox.requests if r.path == "accounts/bulk_update" and r.status == 200]
    assert sum(answered) == 50 and sandbox.count(path="accounts/{id}", status=200) == updates_before
    assert_each_once(sandbox, [f"acct{i}.example" for i in range(230)], kind="accounts")


def test_accounts_update_falls_back_to_put(sandbox, tmp_path):
    def no_patch(environ, start_response):
        if environ["PATH_INFO"].endswith("/bulk_update"):  # a server without bulk updates: PATCH each record
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "No route matches", "error_code": "NOT_FOUND"}']
        if environ["REQUEST_METHOD"] == "PATCH":
            start_response("405 Method Not Allowed", [("Content-Type", "application/json")])
            return [b'{"error": "PATCH not allowed"}']
        return sandbox(environ, start_response)

    with client_for(no_patch, cache_dir=tmp_path / "c") as client:
        created = push_accounts(accounts_frame(4), mode="insert", client=client, progress=False)
        frame = pd.DataFrame({"id": created["apollo_id"], "name": [f"Renamed {i}" for i in range(4)]})
        result = push_accounts(frame, mode="update", client=client, progress=False)
    assert (result["apollo_status"] == "updated").all()
    assert result.attrs["apollo"]["update_calls"] == 5  # one refused PATCH, then PUT for all four
    assert result.attrs["apollo"]["bulk_update_calls"] == 1  # refused once, never tried again
    for record_id in created["apollo_id"]:
        assert sandbox.store.accounts[record_id]["name"].startswith("Renamed")


def test_accounts_with_scoped_key_stop_with_actionable_error(sandbox, tmp_path):
    with sandbox.client(api_key=SCOPED_API_KEY, cache_dir=tmp_path / "c") as client:
        with pytest.raises(PermissionDeniedError, match="master API key") as info:
            push_accounts(accounts_frame(150), mode="insert", client=client, progress=False)
    assert not sandbox.store.accounts
    partial = info.value.partial_result
    assert len(partial) == 150 and set(partial["apollo_status"]) == {"skipped"}


def test_bad_key_raises_authentication_error(sandbox, tmp_path):
    with sandbox.client(api_key="not-the-key-000", cache_dir=tmp_path / "c") as client:
        with pytest.raises(AuthenticationError):
            push(contacts_frame(3), client)
    assert not sandbox.store.contacts


def test_server_errors_mark_the_batch_and_the_run_goes_on(sandbox, fast_client_factory):
    client = fast_client_factory(sandbox, max_retries=1, concurrency=1)
    sandbox.inject("500", "500", path="contacts/bulk_create")
    result = push(contacts_frame(150), client, mode="upsert")
    counts = result["apollo_status"].value_counts().to_dict()
    assert counts == {"error": 100, "created": 50}
    assert result.loc["r0", "apollo_error"].count("run_dedupe=True") == 1
    assert_each_once(sandbox, [f"person{i}@push{i % 7}.example" for i in range(100, 150)])


# -- report and CLI -------------------------------------------------------------------------------


def test_report_round_trips_through_parquet(sandbox, client, tmp_path):
    frame = contacts_frame(12)
    frame.loc["r3", "Email"] = "nope"
    frame.loc["r4", "Email"] = frame.loc["r2", "Email"]
    result = push(frame, client, mode="upsert")
    path = tmp_path / "report.parquet"
    result.to_parquet(path)
    back = pd.read_parquet(path)
    for col in ("apollo_status", "apollo_id", "apollo_error"):
        assert back[col].dtype == result[col].dtype == "string"
    pd.testing.assert_frame_equal(back, result)
    dry = push(frame, client, dry_run=True)
    dry.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), dry)


def test_plain_functions_are_exported():
    assert af.push_contacts is push_contacts and af.push_accounts is push_accounts


def test_cli_push_contacts(tmp_path, capsys):
    src = tmp_path / "in.csv"
    frame = contacts_frame(30).rename(columns={"Email": "mail addr"})
    frame.to_csv(src, index=False)
    report = tmp_path / "report.parquet"
    base = ["push-contacts", str(src), "--report", str(report), "--sandbox", "--quiet", "--map", "mail addr=email",
            "--cache-dir", str(tmp_path / "c")]
    assert main(base + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "30 would create" in out
    assert main(base + ["--mode", "upsert"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert "30 created" in out and str(report) in out
    assert set(pd.read_parquet(report)["apollo_status"]) == {"created"}


def test_cli_exit_1_when_rows_end_in_error(tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": ["0123456789abcdef01234567"], "name": ["x"]}).to_csv(src, index=False)
    report = tmp_path / "r.parquet"
    code = main(["push-accounts", str(src), "--mode", "update", "--report", str(report), "--sandbox", "--quiet",
                 "--cache-dir", str(tmp_path / "c")])
    assert code == 1
    assert "1 errors" in capsys.readouterr().out
    assert pd.read_parquet(report)["apollo_status"].tolist() == ["error"]
