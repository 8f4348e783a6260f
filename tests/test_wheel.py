"""Installed, not only cloned: the wheel as a package index would serve it, installed apart from the repository.

The one slow test of the suite (about 6 s on 2 cores: a wheel build and an install), kept in pytest so CI runs it with
everything else; ``-m "not wheel"`` leaves it out of a quick local run. Build isolation fetches setuptools the
way ``pip install`` from an index would, so the build sees what a user's build sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.wheel
def test_installed_wheel_runs_demo_and_copies_notebooks_from_an_empty_folder(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the repository
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    shutil.copytree(ROOT / "apollo_frames", source / "apollo_frames", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "notebooks", source / "notebooks")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), "."], source)
    assert built.returncode == 0, built.stderr[-2000:]
    warned = [line for line in (built.stdout + built.stderr).splitlines() if "Warning" in line]  # e.g. the license
    assert not warned, warned
    wheel = next((tmp_path / "dist").glob("apollo_frames-*.whl"))
    site = tmp_path / "site"
    installed = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]

    empty = tmp_path / "empty"
    empty.mkdir()
    # the installed package first on the path (the dependencies come from this interpreter's site-packages)
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONNOUSERSITE="1")
    where = _run([sys.executable, "-c", "import apollo_frames; print(apollo_frames.__file__)"], empty, env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    demo = _run([str(site / "bin" / "apollo-frames"), "demo", "--quiet"], empty, env)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "people statuses" in demo.stdout and (empty / "apollo_demo" / "people_enriched.parquet").exists()
    copied = _run([str(site / "bin" / "apollo-frames"), "notebooks", "nb"], empty, env)
    shipped = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert copied.returncode == 0 and sorted(p.name for p in (empty / "nb" / "notebooks").glob("*.ipynb")) == shipped
    assert (empty / "nb" / "data" / "samples" / "people.csv").exists()
