"""Every notebook in notebooks/ runs top to bottom against the sandbox."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


#: checks each notebook runs after the cell of that index (-1: after the last), kept out of the cells an analyst
#: reads; inserted before the notebook is executed
CHECKS: dict[str, dict[int, str]] = {
    "01_enrich.ipynb": {-1: """
assert len(enriched) == len(leads) and enriched["apollo_status"].notna().all()
assert set(apollo_frames.columns(leads).fields) >= {"email", "first_name", "last_name"}
assert (enriched["apollo_status"] == "matched").sum() > len(enriched) / 2
assert matches.by_kind and again.attrs["apollo"]["api_calls"] == 0 and again.attrs["apollo"]["credits_consumed"] == 0
assert len(pd.read_csv(out)) == len(leads)
"""},
    "02_estimate_and_budget.ipynb": {
        5: 'assert sandbox.count() == requests_before          # not a single request',
        7: 'assert huge.duration_s > 86_400 and sandbox.count() == requests_before',
        9: 'assert stats["credits_consumed"] <= 300 and stats["skipped"] > 0',
        12: 'assert rest.credits_max == stats["skipped_credits_max"]   # the same figure the warning gave',
        13: """
assert done.attrs["apollo"]["skipped"] == 0
assert done.attrs["apollo"]["credits_consumed"] <= rest.credits_max
""",
        15: 'assert final.cached == final.unique and final.api_calls == 0 and final.credits_max == 0',
        17: 'assert book["credits"].sum() == sandbox.credits_consumed',
    },
    "03_search_to_enrich.ipynb": {
        6: """
assert stats["unique_queries"] == len(world)        # the duplicate was searched once
assert stats["invalid_rows"] == 1 and "acct-09" in stats["invalid_reasons"]
assert stats["credits_consumed"] == 0 == sandbox.credits_consumed   # people search is free
assert decision_makers["person.email"].isna().all()                 # ...and returns teasers
""",
        9: """
assert e["credits_consumed"] == sandbox.credits_consumed
assert (enriched["apollo_status"] == "matched").all()
""",
        11: 'assert len(back) == len(enriched)',
        13: 'assert again.attrs["apollo"]["api_calls"] == 0 and again_enriched.attrs["apollo"]["api_calls"] == 0',
    },
    "04_push_contacts.ipynb": {
        7: 'assert sandbox.count() == requests_before          # nothing was sent',
        11: """
assert stats["errors"] == 0 and report["apollo_status"].notna().all()
assert len(emails) == len(set(emails))                # no contact twice
""",
        13: """
assert (again.loc[sent, "apollo_id"] == report.loc[sent[sent].index, "apollo_id"]).all()
assert all(sandbox.store.contacts[i]["title"] == "VP Revenue" for i in again.loc[sent, "apollo_id"])
assert len(sandbox.store.contacts) == stats["created"]
""",
        15: 'pd.testing.assert_frame_equal(back, report)',
    },
    "05_phones_meter_quality.ipynb": {
        4: 'assert flagged[wrong].mean() >= 0.9 and flagged[~wrong].mean() < 0.05',
        9: 'assert abs(est.credits_expected - whole) / whole <= 0.15',
        13: """
assert len(sandbox.requests) == requests                    # from the store: nothing sent, nothing paid
assert client.ledger.total_credits() == sandbox.credits_consumed   # the ledger is exact
""",
        16: 'assert tight.count(path="people/bulk_match") == 0       # refused before any request',
    },
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "cache"))
    nb = nbformat.read(path, as_version=4)
    for after, code in sorted(CHECKS.get(path.name, {}).items(), key=lambda kv: kv[0] % (len(nb.cells) + 1),
                              reverse=True):
        nb.cells.insert(after % len(nb.cells) + 1, nbformat.v4.new_code_cell(code))
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
    assert any(cell.outputs for cell in nb.cells if cell.cell_type == "code")


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ should hold at least one notebook"
