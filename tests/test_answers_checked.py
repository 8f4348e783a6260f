"""Answers are checked against what was asked: a server answering other people's records, or one person for
many inputs, gets no wrong person returned or stored (issue 22 item 4)."""

from __future__ import annotations

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.ops.people import checked
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig


def _people(sandbox: Sandbox, n: int) -> list[dict]:
    return [p for p in sandbox.world.people if p.get("email")][:n]


def _enrich(frame: pd.DataFrame, base_url: str, cache) -> pd.DataFrame:
    with af.ApolloClient(api_key=DEFAULT_API_KEY, base_url=base_url, cache_dir=cache, plan="paid",
                         retry_backoff=(0.001, 0.01)) as client:
        client.meter_threshold = float("inf")
        return frame.apollo.enrich_people(client=client, progress=False)


def _wrong(result: pd.DataFrame, truth: dict[str, str]) -> list:
    """Rows returned matched with a person that is not the one their e-mail belongs to."""
    matched = result[result["apollo_status"] == "matched"]
    return [e for e, pid in zip(matched["email"], matched["person.id"], strict=True) if truth[e] != pid]


@pytest.mark.parametrize("fault", ["other_people", "one_person"])
@pytest.mark.parametrize("with_names", [False, True])
def test_no_wrong_person_now_or_on_a_rerun_against_an_honest_server(tmp_path, fault, with_names):
    sandbox = Sandbox(SandboxConfig(seed=11, n_orgs=300))
    people = _people(sandbox, 40)
    truth = {p["email"]: p["id"] for p in people}
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    if with_names:
        frame["first_name"] = [p["first_name"] for p in people]
        frame["last_name"] = [p["last_name"] for p in people]
    cache = tmp_path / "cache"
    with sandbox.serve() as base_url:
        sandbox.inject(*[fault] * 4, path="people/bulk_match")  # one per batch of 10
        hostile = _enrich(frame, base_url, cache)
        assert not _wrong(hostile, truth)
        rejected = hostile[hostile["apollo_status"] == "error"]
        assert len(rejected) >= 30 and (rejected["apollo_error_code"] == "wrong_person").all()
        assert hostile.attrs["apollo"]["contradicted"] == len(rejected)
        assert "answers rejected" in af.engine.summary.RunSummary.from_dict(hostile.attrs["apollo"]).line()
        honest = _enrich(frame, base_url, cache)  # the faults are used up: an honest server now
    assert not _wrong(honest, truth) and (honest["apollo_status"] == "matched").all()
    assert honest.attrs["apollo"]["contradicted"] == 0
    assert honest.attrs["apollo"]["cache_hits"] == len(frame) - len(rejected)  # only the right people were kept


def _person(pid: str, first: str, last: str, email: str | None, linkedin: str | None = None) -> dict:
    return {"id": pid, "first_name": first, "last_name": last, "name": f"{first} {last}", "email": email,
            "linkedin_url": linkedin, "organization": {"primary_domain": "acme.example", "name": "Acme"}}


MARY = _person("a" * 24, "Mary", "Wright", "mary.wright@acme.example", "http://www.linkedin.com/in/mary-w")


@pytest.mark.parametrize("record", [
    {"email": "mary.wright@acme.example"},  # the address asked
    {"email": "mwright1987@gmail.example"},  # a work e-mail for a personal one (her name is in the address)
    {"email": "m.wright@gmail.example", "first_name": "Mary"},
    {"email": "mw1987@gmail.example", "first_name": "mary", "last_name": "wright"},  # the name asked is hers
    {"linkedin_url": "http://www.linkedin.com/in/mary-w"},
    {"first_name": "mary", "last_name": "wright", "domain": "acme.example"},  # name + company
    {"id": "a" * 24},
])
def test_apollos_documented_differences_are_accepted(record):
    parsed = checked([record], [MARY], 1)
    assert parsed.results == [MARY] and not parsed.errors


def test_no_email_returned_is_accepted_when_nothing_contradicts():
    quiet = {**MARY, "email": None}
    assert checked([{"email": "mary.wright@gmail.example"}], [quiet], 1).results == [quiet]


@pytest.mark.parametrize("record", [
    {"email": "tom.hernandez@acme.example"},  # another address, and not her name
    {"email": "tom@gmail.example", "first_name": "Tom", "last_name": "Hernandez"},
    {"linkedin_url": "http://www.linkedin.com/in/tom-h"},
    {"id": "b" * 24},
])
def test_contradictions_are_rejected(record):
    parsed = checked([record], [MARY], 1)
    assert parsed.results == [None] and parsed.errors[0].code == "wrong_person" and parsed.contradicted == 1


def test_one_person_for_several_rows_keeps_only_the_rows_it_fits():
    records = [{"email": "mary.wright@acme.example"}, {"hashed_email": "0" * 32}, {"hashed_email": "1" * 32}]
    parsed = checked(records, [MARY, MARY, MARY], 3)
    assert parsed.results == [MARY, None, None] and sorted(parsed.errors) == [1, 2]
    assert "several different rows" in parsed.errors[1]


def test_one_organization_for_every_domain_is_never_given_to_another_domain(tmp_path):
    sandbox = Sandbox(SandboxConfig(seed=11, n_orgs=300))
    orgs = sandbox.world.orgs[:30]
    frame = pd.DataFrame({"domain": [o["primary_domain"] for o in orgs]})
    with sandbox.serve() as base_url:
        sandbox.inject(*["one_person"] * 3, path="organizations/bulk_enrich")
        with af.ApolloClient(api_key=DEFAULT_API_KEY, base_url=base_url, cache_dir=tmp_path / "c", plan="paid",
                             retry_backoff=(0.001, 0.01)) as client:
            client.meter_threshold = float("inf")
            with pytest.warns(UserWarning, match="could not be matched to a row"):  # the copies are kept, reported
                hostile = frame.apollo.enrich_orgs(client=client, progress=False)
            honest = frame.apollo.enrich_orgs(client=client, progress=False)
    for result in (hostile, honest):
        matched = result[result["apollo_status"] == "matched"]
        assert (matched["org.primary_domain"] == matched["domain"]).all()
    assert (hostile["apollo_status"] == "matched").sum() == 3  # each batch's own organization only
    assert (honest["apollo_status"] == "matched").all()
