"""The ``df.apollo`` accessor: every method is a plain function with the frame filled in.

The methods are generated, pyjanitor's way, from the functions the operation
registry lists (``df.apollo.enrich_people(...)`` is
``apollo_frames.enrich_people(df, ...)``) and from
:func:`~apollo_frames.estimates.estimate`: the same signature without the
frame, the same docstring, so a method can never take or forward less than
its function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pandas as pd

from apollo_frames.estimates import estimate
from apollo_frames.ops import registry
from apollo_frames.reports import flat, report


def frame_method(function: Callable[..., Any], name: str | None = None) -> Callable[..., Any]:
    """``function(frame, ...)`` as a method of the accessor: same signature minus the frame, same docstring."""
    signature = inspect.signature(function)
    frame_param, *rest = signature.parameters.values()

    @functools.wraps(function)
    def method(self: ApolloAccessor, *args: Any, **kwargs: Any) -> Any:
        return function(self._frame, *args, **kwargs)

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(parameters=[self_param, *rest])  # type: ignore[attr-defined]
    method.__annotations__ = {k: v for k, v in function.__annotations__.items() if k != frame_param.name}
    method.__name__ = name or function.__name__
    method.__qualname__ = f"{ApolloAccessor.__name__}.{method.__name__}"
    return method


@pd.api.extensions.register_dataframe_accessor("apollo")
class ApolloAccessor:
    """``df.apollo``: the operations of :mod:`apollo_frames` on this frame (see each method's help)."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame


def methods() -> dict[str, Callable[..., Any]]:
    """Accessor method name -> the plain function it calls."""
    found: dict[str, Callable[..., Any]] = {spec.method_name: spec.function for spec in registry.operations()}
    found["estimate"] = estimate
    found["report"] = report
    found["flat"] = flat
    return found


for _name, _function in methods().items():
    setattr(ApolloAccessor, _name, frame_method(_function, _name))
