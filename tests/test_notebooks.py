"""Every notebook in notebooks/ runs top to bottom against the sandbox."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


#: checks run after a notebook's own cells, kept out of the cells an analyst reads
CHECKS = {
    "01_enrich.ipynb": """
assert len(enriched) == len(leads) and enriched["apollo_status"].notna().all()
assert set(apollo_frames.columns(leads).fields) >= {"email", "first_name", "last_name"}
assert (enriched["apollo_status"] == "matched").sum() > len(enriched) / 2
assert matches.by_kind and again.attrs["apollo"]["api_calls"] == 0 and again.attrs["apollo"]["credits_consumed"] == 0
assert len(pd.read_csv(out)) == len(leads)
""",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "cache"))
    nb = nbformat.read(path, as_version=4)
    if path.name in CHECKS:
        nb.cells.append(nbformat.v4.new_code_cell(CHECKS[path.name]))
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
    assert any(cell.outputs for cell in nb.cells if cell.cell_type == "code")


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ should hold at least one notebook"
