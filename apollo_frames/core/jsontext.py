"""JSON to and from bytes: orjson where it can, the standard library where orjson refuses.

Every answer is parsed once and encoded once on the way to the store, on the
threads that send requests; orjson does both several times faster than
``json`` (benchmark 11, the dispatch figure) and writes the same compact UTF-8
JSON. It refuses a few things ``json`` takes (integers past 64 bits, ``NaN``
literals, keys that are not strings): those go through ``json``, so nothing
that was read or stored before is refused now.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_std_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value`` (``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _std_encode(value).encode()


def loads(data: bytes | str) -> Any:
    """The value of a JSON text; ValueError when it is not JSON, RecursionError when nested too deeply to read."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc).lower():
            raise RecursionError(str(exc)) from None
    return json.loads(data)
