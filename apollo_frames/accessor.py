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
from apollo_frames.ops.changes import changes
from apollo_frames.ops.collect import collect
from apollo_frames.ops.mapping import columns
from apollo_frames.ops.matchreport import match_report
from apollo_frames.reports import flat, report

#: plain frame functions that are accessor methods besides the registered operations and ``estimate``
FRAME_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "match_report": match_report,
    "collect": collect,
    "report": report,
    "flat": flat,
    "columns": columns,
    "changes": changes,
}


def frame_method(function: Callable[..., Any], name: str | None = None, *, call: Callable[..., Any] | None = None,
                 owner: type | None = None) -> Callable[..., Any]:
    """``function(frame, ...)`` as a method of the accessor: same signature minus the frame, same docstring.

    ``call(frame, **arguments)`` runs instead of ``function`` for another kind
    of frame (Dask, Polars): it gets the arguments given, by name, checked
    against ``function``'s signature, so the two cannot drift apart.
    """
    signature = inspect.signature(function)
    frame_param, *rest = signature.parameters.values()

    @functools.wraps(function)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if call is None:
            return function(self._frame, *args, **kwargs)
        return call(self._frame, **named_arguments(signature, self._frame, args, kwargs))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(parameters=[self_param, *rest])  # type: ignore[attr-defined]
    method.__annotations__ = {k: v for k, v in function.__annotations__.items() if k != frame_param.name}
    method.__name__ = name or function.__name__
    method.__qualname__ = f"{(owner or ApolloAccessor).__name__}.{method.__name__}"
    return method


def named_arguments(signature: inspect.Signature, frame: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments given after the frame, by name (``**options`` spread out); TypeError as the function would."""
    bound = signature.bind(frame, *args, **kwargs)
    named: dict[str, Any] = {}
    for key, value in list(bound.arguments.items())[1:]:
        if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[key] = value
    return named


@pd.api.extensions.register_dataframe_accessor("apollo")
class ApolloAccessor:
    """``df.apollo``: the operations of :mod:`apollo_frames` on this frame (see each method's help)."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame


def methods() -> dict[str, Callable[..., Any]]:
    """Accessor method name -> the plain function it calls."""
    found: dict[str, Callable[..., Any]] = {spec.method_name: spec.function for spec in registry.operations()}
    found["estimate"] = estimate
    found.update(FRAME_FUNCTIONS)
    return found


for _name, _function in methods().items():
    setattr(ApolloAccessor, _name, frame_method(_function, _name))
