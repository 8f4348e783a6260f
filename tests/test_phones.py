"""Phones by polling (issue 16 §1): poll_only, request ids, collect, credits exact, no second payment."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from apollo_frames.core.clock import FakeClock
from apollo_frames.ops import phones
from apollo_frames.sandbox import Sandbox, SandboxConfig


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox(SandboxConfig(seed=9, n_orgs=60), clock=FakeClock())


def _frame(sb: Sandbox, n: int = 60) -> pd.DataFrame:
    people = [p for p in sb.world.people if p.get("email")][:n]
    rows = [{"email": p["email"]} for p in people] + [{"email": f"ghost{i}@nowhere.example"} for i in range(5)]
    return pd.DataFrame(rows)


def _ledger_total(client) -> float:
    return client.ledger.total_credits()


def test_phones_are_collected_by_polling_and_a_rerun_pays_nothing(sb, tmp_path):
    frame = _frame(sb)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True)
        matched = out["apollo_status"] == "matched"
        assert (out.loc[matched, "apollo_async_status"] == "pending").all()
        ids = out.loc[matched, "apollo_request_id"]
        assert ids.notna().all() and all(phones.request_id_text(i) == i for i in ids)
        assert out.loc[~matched, "apollo_request_id"].isna().all()
        assert out["person.mobile_phone"].isna().all()
        polls_before = sb.count(path="webhook_result/{id}")

        got = out.apollo.collect(client=c)  # waits on the shared fake clock: nothing really sleeps
        assert sb.count(path="webhook_result/{id}") > polls_before
        # each person's own status: "success" -> done, "not_found" (no mobile) -> not_found
        has_mobile = got["person.mobile_phone"].notna()
        assert (got.loc[matched & has_mobile, "apollo_async_status"] == "done").all() and has_mobile.any()
        assert (got.loc[matched & ~has_mobile, "apollo_async_status"] == "not_found").all()
        assert (matched & ~has_mobile).any()
        by_id = {p["id"]: p for p in sb.world.people}
        expected = {by_id[p]["email"]: m for p, m in sb.world.mobile_phones.items() if by_id[p].get("email")}
        for email, phone, numbers in zip(got["email"], got["person.mobile_phone"], got["person.phone_numbers"],
                                          strict=True):
            if email in expected:
                assert phone and phone.startswith("+") and phone.replace("+", "").isdigit()
                assert json.loads(numbers)[0]["sanitized_number"] == phone
            else:
                assert pd.isna(phone)
        with_mobile = int(got["person.mobile_phone"].notna().sum())
        assert with_mobile == sum(e in expected for e in got["email"]) > 0
        assert sb.credits_consumed == int(matched.sum()) + 8 * with_mobile
        assert _ledger_total(c) == sb.credits_consumed  # the ledger is exact once collected
        assert got.attrs["apollo_collect"]["phones"] == with_mobile

        requests = len(sb.requests)
        again = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True)
        assert len(sb.requests) == requests  # from the store: no enrichment, no poll
        assert again["person.mobile_phone"].equals(got["person.mobile_phone"])
        assert again["apollo_async_status"].equals(got["apollo_async_status"])
        assert got.apollo.collect(client=c).equals(got) and len(sb.requests) == requests
    assert sb.credits_consumed == _ledger_total(c)


def test_collect_without_waiting_leaves_pending_rows_and_a_later_session_finishes(sb, tmp_path):
    frame = _frame(sb, 12)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True, max_credits=200)
        early = out.apollo.collect(client=c, wait=False)
    matched = out["apollo_status"] == "matched"
    assert (early.loc[matched, "apollo_async_status"] == "pending").all()
    assert early.attrs["apollo_collect"]["pending"] == early.attrs["apollo_collect"]["requests"] > 0
    sb.clock.advance(3600)
    saved = tmp_path / "out.parquet"
    early.to_parquet(saved)
    with sb.client(cache_dir=tmp_path / "c") as later:  # a new session: the frame and the store are all it has
        done = pd.read_parquet(saved).apollo.collect(client=later, wait=False)
        assert done.loc[matched, "apollo_async_status"].isin(["done", "not_found"]).all()
        assert (done.loc[done["apollo_async_status"] == "not_found", "person.mobile_phone"]).isna().all()
        assert later.ledger.total_credits() == sb.credits_consumed


def test_budget_counts_the_pending_phone_reveals(sb, tmp_path):
    frame = _frame(sb, 40)
    with sb.client(cache_dir=tmp_path / "c") as c:
        with pytest.warns(UserWarning, match="skipped"):
            out = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True, max_credits=50)
        out.apollo.collect(client=c)
    assert sb.credits_consumed <= 50
    assert (out["apollo_status"] == "skipped").sum() > 0


@pytest.mark.filterwarnings("error::UserWarning")  # stub misses of a waterfall run are misses, not odd credits
def test_terminal_answers_and_bad_credits(sb, tmp_path):
    frame = _frame(sb, 10)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False, waterfall=True)
        matched = out["apollo_status"] == "matched"
        assert (out.loc[matched, "apollo_async_status"] == "pending").all()
        sb.clock.advance(31 * 86400)
        expired = out.apollo.collect(client=c)
        assert (expired.loc[matched, "apollo_async_status"] == "expired").all()
        bogus = out.copy()
        bogus.loc[matched, "apollo_request_id"] = "12345"
        assert (bogus.apollo.collect(client=c).loc[matched, "apollo_async_status"] == "failed").all()
    with pytest.raises(ValueError, match="collect needs"):
        pd.DataFrame({"email": ["a@b.example"]}).apollo.collect(client=c)
    assert phones.payload_credits({"credits_consumed": float("nan")}) is None
    assert phones.payload_credits({"credits_consumed": -3}) is None
    assert phones.payload_credits({"credits_consumed": 16}) == 16.0
    assert phones.request_id_text(-(2**63)) == str(-(2**63)) and phones.request_id_text(2**63) is None
    assert phones.request_id_text(1.5) is None and phones.request_id_text("-42") == "-42"


def test_waterfall_emails_fill_missing_emails(tmp_path):
    sb = Sandbox(SandboxConfig(seed=9, n_orgs=60, webhook_result_delay=0), clock=FakeClock())
    people = [p for p in sb.world.people if not p.get("email")][:20]
    frame = pd.DataFrame([{"first_name": p["first_name"], "last_name": p["last_name"],
                           "domain": p["organization"]["primary_domain"]} for p in people])
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False, waterfall=True).apollo.collect(client=c)
    matched = out["apollo_status"] == "matched"
    assert matched.sum() > 0 and out.loc[matched, "apollo_async_status"].isin(["done", "not_found"]).all()
    assert out.loc[matched, "person.email"].notna().sum() > 0
    assert sb.credits_consumed == c.ledger.total_credits()


def test_the_documented_envelope_and_the_flat_payload_read_alike():
    from pathlib import Path

    envelope = json.loads((Path(__file__).parent / "fixtures/apollo/webhook_result_ready.json").read_text())
    flat = dict(envelope["webhook_result"], request_id=envelope["request_id"])
    for payload in (envelope, flat):
        assert phones.payload_credits(payload) == 8.0
        found, missing = phones.people_of(payload)
        assert phones.phones_of(found)[1] == "+15550107788" and phones.phones_of(missing) == ([], None)
        assert phones.person_state(found, phones.DONE) == "done"
        assert phones.person_state(missing, phones.DONE) == "not_found"
        assert phones.person_state(missing, phones.EXPIRED) == "expired"
    assert phones.people_of({"webhook_result": {"people": "x"}}) == []


def test_numbers_flagged_do_not_call_never_reach_mobile_phone_by_default(tmp_path):
    """Issue 25 §4: any dnc_status_cd but null, not_found and not_on_dnc is do-not-call (unknown codes too)."""
    sb = Sandbox(SandboxConfig(seed=9, n_orgs=60, do_not_call=0.5), clock=FakeClock())
    frame = _frame(sb, 400)
    with sb.client(cache_dir=tmp_path / "c") as c:
        pending = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True)
        got = pending.apollo.collect(client=c)
        again = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True)  # from the store
        allowed = pending.apollo.collect(client=c, allow_dnc=True)
    numbers = [json.loads(n) if isinstance(n, str) else [] for n in got["person.phone_numbers"]]
    flagged = [bool(ns) and phones.do_not_call(ns[0]) for ns in numbers]
    codes = {ns[0]["dnc_status_cd"] for ns in numbers if ns}
    assert any(flagged) and not all(f for f, ns in zip(flagged, numbers, strict=True) if ns)
    assert {"national_dnc", "state_dnc_unknown"} <= codes and codes & {"not_on_dnc", "not_found", None}
    for frame_out in (got, again):
        for mobile, is_flagged in zip(frame_out["person.mobile_phone"], flagged, strict=True):
            assert pd.isna(mobile) if is_flagged else True
    kept = [ns[0]["sanitized_number"] for ns, f in zip(numbers, flagged, strict=True) if ns and not f]
    assert set(got["person.mobile_phone"].dropna()) == set(kept)
    withheld = got.attrs["apollo_collect"]["do_not_call"]
    assert sum(withheld.values()) == sum(flagged) and "state_dnc_unknown" in withheld
    assert allowed["person.mobile_phone"].notna().sum() == sum(bool(ns) for ns in numbers)  # allow_dnc: all


def test_enrich_people_leaves_do_not_call_numbers_out_unless_allow_dnc(tmp_path):
    """Issue 25 §4: person.mobile_phone of a re-run from the store follows allow_dnc; report() counts what it hid."""
    sb = Sandbox(SandboxConfig(seed=9, n_orgs=60, do_not_call=0.5), clock=FakeClock())
    frame = _frame(sb, 200)
    with sb.client(cache_dir=tmp_path / "c") as c:
        frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True).apollo.collect(client=c)
        spent = sb.credits_consumed
        hidden = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True)
        shown = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True, allow_dnc=True)
    assert sb.credits_consumed == spent  # both from the store
    numbers = [json.loads(n) if isinstance(n, str) else [] for n in hidden["person.phone_numbers"]]
    flagged = [bool(ns) and phones.do_not_call(ns[0]) for ns in numbers]
    assert 0 < sum(flagged) < sum(bool(ns) for ns in numbers)
    for ns, is_flagged, hid, show in zip(numbers, flagged, hidden["person.mobile_phone"], shown["person.mobile_phone"],
                                         strict=True):
        own = ns[0]["sanitized_number"] if ns else None
        assert (None if pd.isna(hid) else hid) == (None if is_flagged else own)
        assert (None if pd.isna(show) else show) == own
    report = hidden.apollo.report()
    assert sum(report.do_not_call.values()) == sum(flagged) and "do-not-call" in str(report)
    assert shown.apollo.report().do_not_call == {}


def test_an_answer_carrying_a_do_not_call_mobile_shows_a_clear_number_or_none():
    import pyarrow as pa

    def numbers(*entries):
        return json.dumps([{"sanitized_number": n, "type_cd": t, "dnc_status_cd": c} for n, t, c in entries])

    rows = [
        (numbers(("+1555", "mobile", "national_dnc")), "+1555"),  # the answer's own mobile is flagged
        (numbers(("+1555", "mobile", "national_dnc"), ("+1666", "other", "not_on_dnc")), "+1555"),
        (numbers(("+1777", "mobile", None)), "+1777"),
        (numbers(("+1888", "mobile", "some_new_code")), None),
        (None, "+1999"),  # nothing says anything about do-not-call
    ]
    table = pa.table({"person.phone_numbers": [r[0] for r in rows], "person.mobile_phone": [r[1] for r in rows]})
    assert phones.shown_phones(table).column("person.mobile_phone").to_pylist() == [None, "+1666", "+1777", None, "+1999"]
    allowed = phones.shown_phones(table, allow_dnc=True).column("person.mobile_phone").to_pylist()
    assert allowed == ["+1555", "+1555", "+1777", "+1888", "+1999"]


@pytest.mark.filterwarnings("ignore:.*column")  # (an enrichment's columns, most not pushed)
def test_push_never_writes_a_do_not_call_number_unless_allow_dnc(tmp_path):
    """Issue 25 §4: the number a row would push (here person.mobile_phone of a run with allow_dnc=True) is left out
    of its contact when the row's person.phone_numbers flags it; allow_dnc=True writes it."""
    sb = Sandbox(SandboxConfig(seed=9, n_orgs=60, do_not_call=0.5), clock=FakeClock())
    frame = _frame(sb, 120)
    mapping = {"person.mobile_phone": "phone"}
    with sb.client(cache_dir=tmp_path / "c") as c:
        frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True).apollo.collect(client=c)
        rows = frame.apollo.enrich_people(client=c, progress=False, reveal_phone_number=True, allow_dnc=True)
        rows = rows[rows["apollo_status"] == "matched"]
        with pytest.warns(UserWarning, match="do-not-call were left out"):
            plan = rows.apollo.push_contacts(client=c, progress=False, dry_run=True, columns=mapping)
            out = rows.apollo.push_contacts(client=c, progress=False, columns=mapping)
        kept = {c_["email"]: c_["sanitized_phone"] for c_ in sb.store.contacts.values()}
        allowed = rows.apollo.push_contacts(client=c, progress=False, columns=mapping, allow_dnc=True)
        written = {c_["email"]: c_["sanitized_phone"] for c_ in sb.store.contacts.values()}
    numbers = [json.loads(n) if isinstance(n, str) else [] for n in rows["person.phone_numbers"]]
    flagged = {ns[0]["sanitized_number"] for ns in numbers if ns and phones.do_not_call(ns[0])}
    clear = {ns[0]["sanitized_number"] for ns in numbers if ns and not phones.do_not_call(ns[0])}
    assert flagged and clear and set(rows["person.mobile_phone"].dropna()) == flagged | clear
    assert plan.attrs["apollo"]["do_not_call"] == out.attrs["apollo"]["do_not_call"] == len(flagged)
    assert not any(n in " ".join(plan["apollo_payload"].dropna()) for n in flagged)
    assert (out["apollo_status"] == "created").all() and set(kept.values()) - {None} == clear
    assert (allowed["apollo_status"] == "updated").all()
    assert set(written.values()) - {None} == flagged | clear and allowed.attrs["apollo"]["do_not_call"] == 0


@pytest.mark.parametrize(("code", "flagged"), [(None, False), ("not_found", False), ("not_on_dnc", False),
                                                (" NOT_ON_DNC ", False), ("national_dnc", True), ("", True),
                                                ("whatever_new", True), (0, True)])
def test_do_not_call_fails_safe(code, flagged):
    assert phones.do_not_call({"dnc_status_cd": code}) is flagged


@pytest.mark.parametrize("call", ["push_contacts", "collect"])
def test_allow_dnc_must_be_a_bool(tmp_path, call):
    """allow_dnc="no" is truthy: taken as it is, it would write or show do-not-call numbers."""
    sb = Sandbox(SandboxConfig(seed=9, n_orgs=20), clock=FakeClock())
    frame = _frame(sb, 3)
    with sb.client(cache_dir=tmp_path / "c") as c, pytest.raises(TypeError, match="allow_dnc must be True or False"):
        getattr(frame.apollo, call)(client=c, allow_dnc="no", **({"dry_run": True} if call == "push_contacts" else {}))
    assert sb.count() == 0
