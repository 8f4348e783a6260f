"""Real Apollo response shapes (issue 13), each against the sandbox with its switch on."""

from __future__ import annotations

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import Sandbox, SandboxConfig

ALL_SIZES = {"organization_num_employees_ranges": ["1,10000000"]}


def small(**kw) -> Sandbox:
    kw.setdefault("n_orgs", 300)
    kw.setdefault("seed", 11)
    return Sandbox(SandboxConfig(**kw), clock=FakeClock())


@pytest.fixture
def make_client(tmp_path):
    """A client on a given sandbox (one cache per test), closed at the end."""
    opened = []

    def make(sb: Sandbox, **kw):
        kw.setdefault("retry_backoff", (0.001, 0.01))
        client = sb.client(cache_dir=tmp_path / "cache", **kw)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def save_account(sb: Sandbox, org: dict, name: str | None = None) -> dict:
    """A company saved in the team's CRM: company search then lists it in ``accounts``."""
    return sb.store.create_account({"name": name or org["name"], "domain": org["primary_domain"]})


# -- 1. company search: accounts[] and organizations[] -------------------------------------------------


def test_search_whose_only_hit_is_a_saved_account_returns_it_and_pays(make_client):
    sb = small()
    org = sb.world.orgs[4]
    account = save_account(sb, org, name="Our " + org["name"])
    client = make_client(sb)
    out = af.search_orgs(client=client, progress=False, q_organization_domains_list=[org["primary_domain"]])
    assert len(out) == 1
    row = out.iloc[0]
    assert row["org.source"] == "account" and row["org.account_id"] == account["id"] and row["org.id"] == org["id"]
    assert row["org.name"] == "Our " + org["name"] and row["org.primary_domain"] == org["primary_domain"]
    assert out.attrs["apollo"]["credits_consumed"] == 1 == sb.credits_consumed == client.ledger.total_credits()


def test_search_page_with_accounts_and_organizations_goes_on(make_client):
    sb = small()
    saved = {o["id"]: save_account(sb, o)["id"] for o in sb.world.orgs[10:15]}  # 5 accounts on page 1
    client = make_client(sb)
    out = af.search_orgs(max_results=200, client=client, progress=False, **ALL_SIZES)
    assert len(out) == 200 and out.attrs["apollo"]["pages"] == 2
    assert sb.count(path="mixed_companies/search") == 2
    assert out.attrs["apollo"]["credits_consumed"] == 2 == sb.credits_consumed
    assert out.attrs["apollo"]["total_entries"] == len(sb.world.orgs)
    accounts = out[out["org.source"] == "account"]
    assert dict(zip(accounts["org.id"], accounts["org.account_id"])) == saved
    assert (out["org.source"] == "organization").sum() == 195 and out["org.account_id"].isna().sum() == 195
    # every company once: the saved ones by their organisation id too
    assert set(out["org.id"]) == {o["id"] for o in sb.world.orgs[:200]}
    # the cached pages read the same way
    again = af.search_orgs(max_results=200, client=client, progress=False, **ALL_SIZES)
    assert again.attrs["apollo"]["cache_hits"] == 2 and sb.count(path="mixed_companies/search") == 2
    pd.testing.assert_frame_equal(again, out)


def test_search_page_of_only_accounts_is_charged_and_recorded(make_client):
    sb = small()
    orgs = sb.world.orgs[:3]
    for org in orgs:
        save_account(sb, org)
    client = make_client(sb)
    out = af.search_orgs(client=client, progress=False, q_organization_domains_list=[o["primary_domain"] for o in orgs])
    assert list(out["org.source"]) == ["account"] * 3
    assert out.attrs["apollo"]["credits_consumed"] == 1 == sb.credits_consumed == client.ledger.total_credits()
    assert list(client.ledger.frame()["records_matched"]) == [1]


def test_search_by_row_reads_accounts_too(make_client):
    sb = small()
    org = sb.world.orgs[7]
    account = save_account(sb, org)
    client = make_client(sb)
    frame = pd.DataFrame({"domain": [org["primary_domain"], sb.world.orgs[8]["primary_domain"]]})
    out = frame.apollo.search(kind="orgs", client=client, progress=False)
    assert list(out["org.source"]) == ["account", "organization"]
    assert out["org.account_id"].iloc[0] == account["id"] and out.attrs["apollo"]["credits_consumed"] == 2
