"""Fail when a function outside the sandbox is more complex than ``MAX_COMPLEXITY`` (radon cyclomatic).

Run ``python -m tools.check_complexity [paths...]`` (default: the package). Exits 1 listing every
offender as ``path:line name complexity``; the sandbox (a fake server, not product logic) is exempt.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class, Function

MAX_COMPLEXITY = 20
EXEMPT = ("/apollo_frames/sandbox/",)
DEFAULT_PATHS = ("apollo_frames",)


def _functions(blocks: Iterable[Function | Class]) -> Iterator[Function]:
    """Every function, method and closure in radon's flat block list (methods are listed, closures nested)."""
    for block in blocks:
        if isinstance(block, Function):
            yield block
            yield from _functions(block.closures)


def python_files(paths: Iterable[str]) -> list[Path]:
    """The ``.py`` files under ``paths``, minus the exempt ones, in a stable order."""
    found: set[Path] = set()
    for path in map(Path, paths):
        found.update(path.rglob("*.py") if path.is_dir() else [path])
    return sorted(p for p in found if not any(e in f"/{p.as_posix()}" for e in EXEMPT))


def offenders(paths: Iterable[str] = DEFAULT_PATHS, limit: int = MAX_COMPLEXITY) -> list[str]:
    """``path:line name (complexity)`` for every function above ``limit``, worst first."""
    found = [
        (block.complexity, f"{path.as_posix()}:{block.lineno} {block.fullname} ({block.complexity})")
        for path in python_files(paths)
        for block in _functions(cc_visit(path.read_text(encoding="utf-8")))
        if block.complexity > limit
    ]
    return [line for _, line in sorted(found, key=lambda item: -item[0])]


def main(argv: list[str] | None = None) -> int:
    lines = offenders(argv or DEFAULT_PATHS)
    for line in lines:
        print(line)
    if lines:
        print(f"{len(lines)} function(s) above cyclomatic complexity {MAX_COMPLEXITY} (radon); split them up.")
        return 1
    print(f"complexity: no function above {MAX_COMPLEXITY} outside {', '.join(EXEMPT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
