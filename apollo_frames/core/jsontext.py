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
* Text orjson refuses (invalid UTF-8, lone surrogates, ``NaN``) goes through
  ``json``, and values orjson cannot write are written by ``json`` with
  non-ASCII escaped, so any text at all can be stored.
* Numbers: integers past 64 bits are read by orjson as floats (exactly only
  when the text goes through ``json`` for another reason), and a number past
  a float's range (``1e400``) is infinity, stored as null. Apollo sends
  neither: its ids are strings.

:func:`stable` is the one *stable* text of a value (keys sorted), written where text is kept for comparing or
reading back: the flattened JSON columns and ``extra`` (``apollo_frames.core.schema``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import orjson

#: the deepest nesting read (orjson writes no deeper)
MAX_DEPTH = 254

_std_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

#: keys sorted; numpy numbers as numbers; dates and dataclasses through ``default`` (``str``), as ``json`` writes them
_STABLE = (orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME
           | orjson.OPT_PASSTHROUGH_DATACLASS)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``."""
    try:
        return orjson.dumps(value)
    except TypeError:  # (orjson.JSONEncodeError) text not UTF-8, integers past 64 bits, keys not strings, depth
        return _std_encode(value).encode("ascii")


def stable(value: Any) -> bytes:
    """The stable JSON text of ``value``: compact UTF-8, keys sorted, non-ASCII as it is, what JSON cannot express
    written as ``str(obj)``; NaN and infinities are null (orjson's text, one pass in C).

    Where orjson refuses (keys that are not text, integers past 64 bits, lone surrogates, deep nesting) it is
    ``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)``, unsorted when
    the keys cannot be sorted, with non-ASCII escaped when the text would not be UTF-8.
    """
    try:
        return orjson.dumps(value, default=str, option=_STABLE)
    except TypeError:  # (orjson.JSONEncodeError)
        return _std_stable(value)


def stable_each(values: Iterable[Any]) -> list[bytes]:
    """``[stable(v) for v in values]``, with orjson called in the loop (a column of values at once)."""
    values = values if isinstance(values, list) else list(values)
    dumps, option = orjson.dumps, _STABLE
    try:
        return [dumps(v, default=str, option=option) for v in values]
    except TypeError:  # (orjson.JSONEncodeError) one of them goes through json
        return [stable(v) for v in values]


def stable_plain(value: Any) -> bytes:
    """``stable(value)`` for plain JSON data written by orjson alone; TypeError for anything else (a value that
    ``stable`` writes through ``str()`` or ``json``)."""
    return orjson.dumps(value, option=_STABLE)


def _std_stable(value: Any) -> bytes:
    try:
        return _std_text(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # lone surrogates: escaped, so the text is UTF-8 and reads back the same
        return _std_text(value, ensure_ascii=True).encode()


def _std_text(value: Any, ensure_ascii: bool) -> str:
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):  # keys of mixed types cannot be sorted; circular data
        return json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"), default=repr, check_circular=False)


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text; ValueError when it is not JSON, RecursionError when nested deeper than
    ``max_depth`` (an answer deeper than :data:`MAX_DEPTH` could not be written back)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        why = str(exc).lower()
        if "depth" in why or "recursion" in why:  # (the wording moved between orjson versions)
            raise RecursionError(str(exc)) from None
        text = _text(data)
        if _text_depth(text) > max_depth:  # before json's parser, which recurses in C
            raise RecursionError(f"JSON nested more than {max_depth} levels") from None
        return json.loads(text, parse_constant=_no_number)
    try:
        orjson.dumps(value)  # ~25 us for ten people: below orjson's writing limit there is nothing to check
    except TypeError:  # (orjson.JSONEncodeError) too deep to write, or a value only json writes
        _check_depth(value, max_depth)
    return value


def _no_number(constant: str) -> str:
    """``NaN``, ``Infinity``, ``-Infinity``: read as that text."""
    return constant


#: a string, or an unterminated one to the end of the text: one pass whatever the text (a pattern that can fail
#: would be tried again from every later quote, quadratic on hostile text, all of it holding the GIL)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _text(data: bytes | bytearray | memoryview | str) -> str:
    """The text json's parser reads from ``data`` (bytes in UTF-8, -16 or -32, as it detects them); ValueError
    when they are none of those."""
    if isinstance(data, str):
        return data
    raw = bytes(data)
    return raw.decode(json.detect_encoding(raw), "surrogatepass")  # UnicodeDecodeError is a ValueError


def _text_depth(text: str) -> int:
    """The deepest nesting of brackets in a JSON text, strings left out."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """RecursionError when ``value`` nests deeper than ``max_depth`` (a walk without recursion)."""
    level: list[Any] = [value] if isinstance(value, (dict, list)) else []
    for _ in range(max_depth):  # the containers one level further in, at each turn
        level = [item for node in level for item in (node.values() if isinstance(node, dict) else node)
                 if isinstance(item, (dict, list))]
    if level:
        raise RecursionError(f"JSON nested more than {max_depth} levels")
