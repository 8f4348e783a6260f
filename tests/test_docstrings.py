"""The exported functions' docstrings name their parameters and carry an example, and the examples run (doctest,
against the in-process sandbox: ``apollo_frames.use_sandbox()``, so nothing leaves the machine)."""

from __future__ import annotations

import doctest
import inspect
import re
import sys

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.client.http import set_default_client
from apollo_frames.engine import options as run_options

FUNCTIONS = sorted(name for name in af.__all__ if inspect.isfunction(getattr(af, name)))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture(scope="module")
def sandbox_session(tmp_path_factory):
    """One sandbox for every example (what ``af.use_sandbox()`` gives a notebook), its store in a folder of its own."""
    client = af.use_sandbox(tmp_path_factory.mktemp("doc-cache"))
    yield client
    af.reset()


def run_examples(obj, name: str) -> tuple[int, str]:
    """(how many examples ``obj``'s docstring holds, the report of those that failed)."""
    globs = {**vars(sys.modules[obj.__module__]), "af": af, "pd": pd}
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs=globs)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    said: list[str] = []
    for test in tests:
        runner.run(test, out=said.append)
    return sum(len(t.examples) for t in tests), "".join(said)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_example_runs(name, sandbox_session, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    try:
        count, failed = run_examples(getattr(af, name), name)
    finally:  # (use_sandbox, use_client and reset change the session's client: the next example has the sandbox's)
        replaced = set_default_client(sandbox_session)
        if replaced is not None and replaced is not sandbox_session:
            replaced.close()
    assert count > 0, f"{name}'s docstring has no example"
    assert failed == ""


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_docstring_names_every_parameter(name):
    function = getattr(af, name)
    doc = inspect.getdoc(function) or ""
    params = [p for p in inspect.signature(function).parameters.values() if p.kind is not p.VAR_KEYWORD]
    missing = [p.name for p in params if not re.search(rf"``{p.name}(``|=)|^\s+{p.name}: ", doc, re.MULTILINE)]
    assert missing == [], f"{name}: {missing} not described"


def test_run_options_example_runs():
    count, failed = run_examples(run_options.RunOptions, "RunOptions")
    assert count > 0 and failed == ""


def test_a_broken_example_is_seen(sandbox_session):
    def broken():
        """>>> 1 + 1
        3
        """

    count, failed = run_examples(broken, "broken")
    assert count == 1 and "Expected:" in failed


#: the exceptions a user writes ``except`` for: each shows, by an example that runs, when it is raised
CAUGHT = ["ApolloError", "ConfigurationError", "BudgetExceededError", "APIStatusError", "InputError",
          "ColumnMappingError", "FilterError", "RunInterrupted"]


@pytest.mark.parametrize("name", CAUGHT)
def test_the_exception_example_runs(name, sandbox_session, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # (the wrong-key example's client keeps its store here)
    count, failed = run_examples(getattr(af, name), name)
    assert count > 0, f"{name}'s docstring has no example"
    assert failed == ""


def test_every_exported_exception_says_what_it_means():
    exported = [getattr(af, n) for n in af.__all__ if isinstance(getattr(af, n), type)
                and issubclass(getattr(af, n), BaseException | Warning)]
    assert len(exported) >= 20 and set(CAUGHT) <= {e.__name__ for e in exported}
    assert [e.__name__ for e in exported if len(inspect.getdoc(e) or "") < 20] == []
