"""Every notebook in notebooks/ runs top to bottom against the sandbox, then its checks.

The notebooks are for analysts: their cells hold no assertions. What must hold after a notebook ran is in
``tests/notebook_checks/<notebook>.py``, run in the same kernel after the last cell, with the notebook's
variables in scope. Each notebook runs in a folder of its own (what it writes stays there), beside a link
to the repository's ``data/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECKS = Path(__file__).resolve().parent / "notebook_checks"


def _asserts(source: str) -> int:
    return sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(source)))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_its_checks_hold(path, tmp_path, monkeypatch):
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "data").symlink_to(ROOT / "data")
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.read(path, as_version=4)
    checks = (CHECKS / f"{path.stem}.py").read_text()
    nb.cells.append(nbformat.v4.new_code_cell(checks))
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
    assert _asserts(checks) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_cells_teach_and_do_not_test(path):
    """No assertion, no sandbox bookkeeping in a user-facing cell; at least one picture; checks kept apart."""
    nb = nbformat.read(path, as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(_asserts(source) == 0 for source in code)
    assert not any("sandbox.count" in s or "credits_consumed ==" in s for s in code)
    assert any("plot" in s for s in code)
    assert (CHECKS / f"{path.stem}.py").exists()


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ should hold at least one notebook"
