"""Entries and keys of the answer store, without I/O.

An entry is the stored bytes of one answer: the JSON ``{"v": SCHEMA_VERSION, "k": key, "d": answer}``, the answer
a JSON object, or null for a cached miss. A key is the SHA-256 of the canonical JSON of (schema version,
namespace, endpoint, normalised input record, options that change the answer); the API key is never part of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.core import jsontext

#: Bump when the meaning or format of stored values changes: old entries are then never looked up
#: (the version is part of every key) and ``cache verify`` / ``prune`` clear them. 1 was pickled values.
SCHEMA_VERSION = 2


def canonical_json(value: Any) -> str:
    """One text per JSON value (keys sorted, compact, unescaped): what keys and fingerprints hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_keys(namespace: str, endpoint: str, record_texts: Iterable[str] | pa.Array,
               options: Mapping[str, Any] | None = None) -> list[str]:
    """The store's keys of records given as their :func:`canonical_json` texts: the SHA-256 of the canonical
    JSON of (schema version, namespace, endpoint, record, options), built around each text.

    ``record_texts`` may be an Arrow string array (no nulls): the whole texts are then joined by one kernel and
    only the hashing is per value (about half the time of building each text in Python)."""
    head = f"[{SCHEMA_VERSION},{canonical_json(namespace)},{canonical_json(endpoint)},"
    tail = f",{canonical_json(dict(options or {}))}]"
    if isinstance(record_texts, (pa.Array, pa.ChunkedArray)):
        whole = pc.binary_join_element_wise(head, record_texts.cast(pa.string()), tail, "")
        return [digest.hexdigest() for digest in map(hashlib.sha256, whole.cast(pa.binary()).to_pylist())]
    return [hashlib.sha256(f"{head}{text}{tail}".encode()).hexdigest() for text in record_texts]


def entry_key(namespace: str, endpoint: str, record: Any, options: Mapping[str, Any] | None = None) -> str:
    """The store's key of one answer (what :meth:`AnswerStore.key` gives), without opening a store."""
    return entry_keys(namespace, endpoint, [canonical_json(record)], options)[0]


class BadEntry(ValueError):
    """A stored entry that is not ours: not JSON, another key or schema version, a key that is not text."""


def encode_entry(key: str, data: Any, texts: dict[int, bytes] | None = None) -> bytes:
    """The stored bytes of one answer (``data`` is a JSON object or None for a cached miss).

    ``texts``: the JSON of answers already encoded, by ``id`` (an answer stored under several keys is encoded once).
    """
    texts = {} if texts is None else texts
    if id(data) not in texts:
        texts[id(data)] = jsontext.dumps(data)
    # a key made here is hex, needing no escapes: quoted as json.dumps would, without its cost on every entry
    quoted = f'"{key}"' if key.isascii() and key.isalnum() else json.dumps(key, ensure_ascii=False)
    return b"".join((f'{{"v":{SCHEMA_VERSION},"k":{quoted},"d":'.encode(), texts[id(data)], b"}"))


def decode_entry(key: Any, blob: Any) -> dict | None:
    """The answer in ``blob`` if it is a current entry for ``key``; else :class:`BadEntry` saying why."""
    if not isinstance(key, str):
        raise BadEntry("key not text")
    if not isinstance(blob, (bytes, str)):
        raise BadEntry(f"value of type {type(blob).__name__}")
    try:
        entry = jsontext.loads(blob, max_depth=jsontext.MAX_DEPTH + 1)  # (the entry wraps the answer)
    except (ValueError, UnicodeDecodeError):
        raise BadEntry("not JSON") from None
    except RecursionError:
        raise BadEntry("nested too deeply") from None
    if not isinstance(entry, dict) or "d" not in entry:
        raise BadEntry("not an entry")
    if entry.get("v") != SCHEMA_VERSION:
        raise BadEntry(f"schema version {entry.get('v')!r}")
    if entry.get("k") != key:
        raise BadEntry("carries another key")
    data = entry["d"]
    if data is not None and not isinstance(data, dict):
        raise BadEntry(f"answer of type {type(data).__name__}")
    return data
