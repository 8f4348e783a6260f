"""Pay once per person (issue 24 §1): an answer is stored under every identifier it proves."""

from __future__ import annotations

import pandas as pd
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import Sandbox, SandboxConfig


def _people(sb: Sandbox, n: int) -> list[dict]:
    found = [p for p in sb.world.people if p.get("email") and p.get("linkedin_url")][:n]
    assert len(found) == n
    return found


def test_a_person_paid_for_by_email_is_served_by_linkedin_url_and_by_id(tmp_path):
    sb = Sandbox(SandboxConfig(seed=4, n_orgs=80), clock=FakeClock())
    people = _people(sb, 500)
    with sb.client(cache_dir=tmp_path / "c") as client:
        by_email = af.enrich_people(pd.DataFrame({"email": [p["email"] for p in people]}), client=client,
                                    progress=False)
        paid, calls = sb.credits_consumed, len(sb.requests)
        by_linkedin = af.enrich_people(pd.DataFrame({"linkedin_url": [p["linkedin_url"] for p in people]}),
                                       client=client, progress=False)
        by_id = af.enrich_people(pd.DataFrame({"id": [p["id"] for p in people]}), client=client, progress=False,
                                 columns={"id": "id"})
    assert paid == 500 and (by_email["apollo_status"] == "matched").all()
    assert len(sb.requests) == calls and sb.credits_consumed == paid  # 0 requests, 0 credits since
    person = [c for c in by_email.columns if c.startswith("person.")]
    for again in (by_linkedin, by_id):
        assert (again["apollo_status"] == "matched").all()
        assert again.attrs["apollo"]["api_calls"] == 0 and again.attrs["apollo"]["credits_consumed"] == 0
        assert (again["apollo_credits"] == 0).all()
        pd.testing.assert_frame_equal(answers(again)[person], answers(by_email)[person])


def test_an_identifier_another_persons_answer_holds_is_never_overwritten(tmp_path):
    """A hostile or mistaken answer claiming an identifier already proven for someone else is kept out, counted."""
    sb = Sandbox(SandboxConfig(seed=4, n_orgs=80), clock=FakeClock())
    a, b = _people(sb, 2)
    with sb.client(cache_dir=tmp_path / "c") as client:
        af.enrich_people(pd.DataFrame({"email": [a["email"]]}), client=client, progress=False)
        b["linkedin_url"] = a["linkedin_url"]  # the world now says b holds a's LinkedIn URL
        out = af.enrich_people(pd.DataFrame({"email": [b["email"]]}), client=client, progress=False)
        served = af.enrich_people(pd.DataFrame({"linkedin_url": [a["linkedin_url"]]}), client=client,
                                  progress=False)
    assert out.attrs["apollo"]["identifier_conflicts"] == 1
    assert served["person.id"].tolist() == [a["id"]]  # still a's answer


@pytest.mark.parametrize("locked", [True])
def test_a_placeholder_email_is_no_identifier_to_store_under(tmp_path, locked):
    sb = Sandbox(SandboxConfig(seed=4, n_orgs=80, locked_emails=1.0), clock=FakeClock())
    people = _people(sb, 3)
    with sb.client(cache_dir=tmp_path / "c") as client:
        af.enrich_people(pd.DataFrame({"linkedin_url": [p["linkedin_url"] for p in people]}), client=client,
                         progress=False)
        keys = client.cache.keys("people/bulk_match", ['{"email":"email_not_unlocked@domain.com"}'],
                                 {"reveal_personal_emails": False, "reveal_phone_number": False})
        assert keys[0] not in client.cache


def test_an_unattributed_answer_never_overwrites_another_persons_answer_under_its_identifiers(tmp_path):
    """A paid answer no row could be matched to is stored under its own identifiers through the same guard as
    an alias: an identifier another person's answer holds stays theirs (and is counted)."""
    import respx

    base, linkedin = "https://apollo.test/api/v1", "http://www.linkedin.com/in/ada-one"
    ada = {"id": "5f1a2b3c4d5e6f7a8b9c0d01", "name": "Ada One", "first_name": "Ada", "last_name": "One",
           "email": "ada@one.example", "linkedin_url": linkedin}
    other = {"id": "5f1a2b3c4d5e6f7a8b9c0d02", "name": "Zed Two", "first_name": "Zed", "last_name": "Two",
             "email": "zed@two.example", "linkedin_url": linkedin}  # claims Ada's LinkedIn URL

    def answer(matches: list, asked: int) -> dict:
        return {"status": "success", "total_requested_enrichments": asked, "unique_enriched_records": len(matches),
                "missing_records": asked - len(matches), "credits_consumed": len(matches), "matches": matches}

    with respx.mock(base_url=base) as mock:
        route = mock.post("/people/bulk_match")
        route.respond(200, json=answer([ada], 1))
        with af.ApolloClient(api_key="test-key-0123456789", base_url=base, cache_dir=tmp_path / "c",
                             clock=FakeClock()) as client:
            af.enrich_people(pd.DataFrame({"email": [ada["email"]]}), client=client, progress=False)
            route.respond(200, json=answer([other], 2))
            with pytest.warns(UserWarning, match="could not be matched to a row"):
                out = af.enrich_people(pd.DataFrame({"email": ["b@three.example", "c@four.example"]}),
                                       client=client, progress=False)
            assert [u["id"] for u in out.attrs["apollo"]["unattributed"]] == [other["id"]]
            calls = route.call_count
            served = af.enrich_people(pd.DataFrame({"linkedin_url": [linkedin]}), client=client, progress=False)
            by_email = af.enrich_people(pd.DataFrame({"email": [other["email"]]}), client=client, progress=False)
    assert route.call_count == calls
    assert served["person.id"].tolist() == [ada["id"]]  # still Ada's answer
    assert by_email["person.id"].tolist() == [other["id"]]  # the unattributed answer kept under its own e-mail
    assert out.attrs["apollo"]["identifier_conflicts"] == 1
