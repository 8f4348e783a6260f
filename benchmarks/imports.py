"""``import apollo_frames`` beside ``import pandas`` (issue 27: <= 1.4x), fresh interpreters, alternating.

    python -m benchmarks.imports [--runs 9] [--compiled]

Each run is a new interpreter timing its one import (``time.perf_counter`` around it, interpreter start-up
left out); the two alternate so both see the same load. Prints min to min and the median ratio, the load
average, and the modules ``import apollo_frames`` loads that ``import pandas`` does not, by their own
``-X importtime`` time (the largest first).

pandas is imported from its installed bytecode. ``--compiled`` first writes apollo_frames's bytecode too
(``compileall``, as ``pip install`` does): under ``PYTHONDONTWRITEBYTECODE=1`` with an editable install, every
module of the package is otherwise compiled from source on each import.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys

_TIMED = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def timed(module: str) -> float:
    """Seconds one fresh interpreter takes to import ``module``."""
    out = subprocess.run([sys.executable, "-c", _TIMED.format(module)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def breakdown(top: int = 12) -> list[tuple[str, int]]:
    """(module, microseconds of its own) of the modules ``import apollo_frames`` loads and pandas does not."""
    def tree(module: str) -> dict[str, int]:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                             text=True, check=True).stderr
        times = {}
        for line in err.splitlines()[1:]:
            own, _, name = line.split("|")
            times[name.strip()] = int(own.split(":")[1])
        return times
    ours, theirs = tree("apollo_frames"), tree("pandas")
    added = [(name, us) for name, us in ours.items() if name not in theirs]
    return sorted(added, key=lambda item: -item[1])[:top]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--compiled", action="store_true", help="write apollo_frames's bytecode first")
    args = parser.parse_args(argv)
    if args.compiled:
        import apollo_frames

        compileall.compile_dir(os.path.dirname(apollo_frames.__file__), quiet=1)
    ours, theirs, loads = [], [], []
    for _ in range(args.runs):
        loads.append(os.getloadavg()[0])
        ours.append(timed("apollo_frames"))
        theirs.append(timed("pandas"))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"import apollo_frames / import pandas, {args.runs} fresh interpreters each, alternating: "
          f"min {min(ours):.3f} s / {min(theirs):.3f} s = {min(ours) / min(theirs):.2f}x; median of pairs "
          f"{statistics.median(ratios):.2f}x (medians {statistics.median(ours):.3f} s / "
          f"{statistics.median(theirs):.3f} s); load {min(loads):.1f}-{max(loads):.1f}")
    print("modules apollo_frames adds, by their own import time (-X importtime, one run):")
    for name, us in breakdown():
        print(f"  {name}: {us / 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
