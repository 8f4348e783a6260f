"""JSON to and from bytes: orjson where it can, the standard library where orjson refuses.

Every answer is parsed once and encoded once on the way to the store, on the
threads that send requests; orjson does both several times faster than
``json`` (benchmark 11, the dispatch figure) and writes the same compact UTF-8
JSON. What the two would read differently is made one rule here:

* ``NaN`` and ``Infinity`` are not JSON: read as the text ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"``, which nothing takes for a number (``json``
  would make floats of them, which orjson writes back as null: a re-run
  would read something else than the run that paid).
* Nesting deeper than :data:`MAX_DEPTH` (which orjson cannot write back) is a
  ``RecursionError``, as ``json`` gives for its own limit: such an answer
  could not be stored.
* Integers past 64 bits are read by orjson as floats (Apollo sends none: its
  ids are strings); text orjson refuses (invalid UTF-8, lone surrogates) goes
  through ``json``, and values orjson cannot write are written by ``json``
  with non-ASCII escaped, so any text at all can be stored.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: the deepest nesting read (orjson writes no deeper)
MAX_DEPTH = 254

_std_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``."""
    try:
        return orjson.dumps(value)
    except TypeError:  # (orjson.JSONEncodeError) text not UTF-8, integers past 64 bits, keys not strings, depth
        return _std_encode(value).encode("ascii")


def loads(data: bytes | str) -> Any:
    """The value of a JSON text; ValueError when it is not JSON, RecursionError when nested too deeply to keep."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc).lower():
            raise RecursionError(str(exc)) from None
        value = json.loads(data, parse_constant=_no_number)
        _check_depth(value)
        return value
    try:
        orjson.dumps(value)  # ~25 us for ten people: proves it can be written back
    except TypeError as exc:  # (orjson.JSONEncodeError)
        if "recursion" in str(exc).lower():
            raise RecursionError(f"JSON nested more than {MAX_DEPTH} levels") from None
        _check_depth(value)
    return value


def _no_number(constant: str) -> str:
    """``NaN``, ``Infinity``, ``-Infinity``: read as that text."""
    return constant


def _check_depth(value: Any) -> None:
    """RecursionError when ``value`` nests deeper than :data:`MAX_DEPTH` (a walk without recursion)."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH + 1):
        level = [item for node in level if isinstance(node, (dict, list))
                 for item in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return
    raise RecursionError(f"JSON nested more than {MAX_DEPTH} levels")
