"""What an operation would do for a frame, counted without sending anything."""

from __future__ import annotations

import dataclasses
import math

from apollo_frames.engine.runner import plan_work

# -- the work behind an estimate -----------------------------------------------------------------


@dataclasses.dataclass
class Work:
    """What an operation would do for a frame, counted without sending anything."""

    operation: str
    endpoint: str
    rows: int
    invalid: int
    unique: int
    cached: int
    to_fetch: int
    batch_size: int
    #: worst-case credits for one record sent
    worst_credits: float
    #: requests needed; default ceil(to_fetch / batch_size)
    api_calls: int | None = None

    def __post_init__(self) -> None:
        if self.api_calls is None:
            self.api_calls = math.ceil(self.to_fetch / self.batch_size) if self.to_fetch else 0


def check_options(operation: str, options: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"estimate({operation!r}) got unknown option(s) {unknown}; it accepts {sorted(allowed) or 'none'}"
        )


def work_from_plan(frame, prepared, op, options: dict, client, *, refresh: bool = False,
                   max_age: float | None = None) -> Work:
    """Count the work of a runner ``Operation``: dedupe and cache lookup exactly as ``run_operation`` does
    (``max_age`` seconds: older stored answers count as to fetch)."""
    plan = plan_work(prepared, op, options, client, refresh=refresh, flatten=False, max_age=max_age)
    return Work(
        operation=op.name,
        endpoint=op.endpoint,
        rows=len(frame),
        invalid=sum(1 for r in prepared.records if r is None),
        unique=len(plan.unique_records),
        cached=len(plan.cached),
        to_fetch=len(plan.to_fetch),
        batch_size=op.batch_size,
        worst_credits=float(op.worst_credits(options)),
    )
