"""The package has no import cycle, counting imports made inside functions (grimp reads every import statement)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import grimp

from tools.check_complexity import offenders


def import_cycles(package: str) -> list[list[str]]:
    """The strongly connected components (size > 1, or a module importing itself) of ``package``'s import graph.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run, so they cannot form a runtime cycle.
    """
    graph = grimp.build_graph(package, exclude_type_checking_imports=True, cache_dir=None)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    return strongly_connected(edges)


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components that are cycles, each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    cycles.append(sorted(component))
    return sorted(cycles)


def test_strongly_connected_finds_cycles_and_only_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": set(), "f": {"f"}, "g": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"], ["f"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count(tmp_path, monkeypatch):
    package = tmp_path / "cyclic_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from cyclic_pkg import high\n    return high\n")
    (package / "high.py").write_text("from cyclic_pkg import low\n")
    (package / "typed.py").write_text(
        textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from cyclic_pkg import high
            """
        )
    )
    (package / "other.py").write_text("from cyclic_pkg import typed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_cycles("cyclic_pkg") == [["cyclic_pkg.high", "cyclic_pkg.low"]]
    finally:
        for name in [m for m in sys.modules if m.startswith("cyclic_pkg")]:
            del sys.modules[name]


def test_apollo_frames_has_no_import_cycle():
    cycles = import_cycles("apollo_frames")
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_complexity_check_names_offenders(tmp_path):
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(25))
    (tmp_path / "tangled.py").write_text(f"def tangled(x):\n{branches}    return -1\n\n\ndef plain(x):\n    return x\n")
    found = offenders([str(tmp_path)])
    assert len(found) == 1 and "tangled.py:1 tangled (26)" in found[0]


def test_importing_the_package_does_not_load_the_sandbox():
    """The sandbox is for tests, the demo and use_sandbox(): `import apollo_frames` never pays for it (issue 27)."""
    import subprocess
    import sys

    code = "import sys, apollo_frames; print(sorted(m for m in sys.modules if 'sandbox' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_package_does_not_load_httpx_until_a_client_sends():
    """httpx (httpcore, and click and rich for its command line) loads when a client first builds its connection
    pool, not on `import apollo_frames` (issue 27: the import takes <= 1.4x `import pandas`)."""
    import subprocess
    import sys

    lazy = ("httpx", "httpcore", "click", "rich", "apollo_frames.client.deadline")
    loaded = f"print(sorted(m for m in sys.modules if m.split('.')[0] in {lazy!r} or m in {lazy!r}))"
    build = "apollo_frames.ApolloClient(api_key='k' * 22, base_url='http://127.0.0.1:9')._client()"
    code = f"import sys, apollo_frames; {loaded}; {build}; print(sorted(m for m in {lazy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", str(sorted(lazy))]


def test_every_public_exception_lives_in_core_errors_and_is_exported():
    """One tree, one place (issue 23 §3): a user catches any error of the package from `apollo_frames`."""
    import importlib
    import inspect
    import pkgutil

    import apollo_frames
    from apollo_frames.core import errors

    internal = {("apollo_frames.core.entries", "BadEntry"),  # caught inside the store: a stored entry set aside
                ("apollo_frames.cli", "UsageError")}  # the command line's own: an exit code, never raised to Python
    outside = []
    for info in pkgutil.walk_packages(apollo_frames.__path__, "apollo_frames."):
        if ".sandbox" in info.name or info.name.endswith("__main__") or info.name == errors.__name__:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
                    and not name.startswith("_") and (info.name, name) not in internal):
                outside.append(f"{info.name}.{name}")
    assert outside == []
    defined = [name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__]
    assert set(defined) <= set(apollo_frames.__all__), set(defined) - set(apollo_frames.__all__)
    assert {"RunInterrupted", "PushInterrupted", "SearchInterrupted", "CircuitOpenError"} <= set(defined)


def test_no_private_name_is_imported_across_modules():
    """A module's `_names` are its own (issue 23 §3): what another module needs is public, named for its job."""
    import ast

    found = []
    package = Path(__file__).resolve().parents[1] / "apollo_frames"
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("apollo_frames"):
                found += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")
                          and not a.name.startswith("__")]
    assert found == []


def test_no_attribute_is_attached_that_its_class_does_not_declare():
    """No monkey-patching (issue 23 §3): mypy refuses an undeclared attribute unless told to look away, so the only
    ``type: ignore[attr-defined]`` left are on objects that are not ours (a function's signature, a socket server's
    handler, the Dask accessor registered after its class)."""
    from pathlib import Path

    import apollo_frames

    root = Path(apollo_frames.__file__).parent
    found = sorted(f"{path.relative_to(root)}:{number}"
                   for path in root.rglob("*.py")
                   for number, line in enumerate(path.read_text().splitlines(), 1)
                   if "type: ignore[attr-defined]" in line)
    allowed = {"accessor.py", "dask.py", "sandbox/server.py"}
    assert [place for place in found if place.split(":")[0] not in allowed] == []
    assert found  # (the walk sees the package's files)
