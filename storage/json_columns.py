"""How JSON columns are written and read, on every engine: with orjson, which takes a reply's payload or a
conversation's state to text and back several times faster than the standard library (a turn reads one and writes
the other). Keys that are not strings are written as strings, as the standard library writes them.

What orjson refuses and the standard library and the databases take (an integer beyond 64 bits, a lone surrogate, a
named tuple; NaN, Infinity or a lone surrogate's escape in stored text) goes through the standard library instead,
as it did before: a value written once is always read back. One difference stays: orjson reads an integer beyond 64
bits as a float (nothing the bot stores comes near: its ids and amounts are 64-bit)."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """JSON text (SQLite stores text)."""
    return dumps_utf8(value).decode()


def dumps_utf8(value: Any) -> bytes:
    """JSON as UTF-8 bytes, what psycopg sends (it takes bytes as they are)."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value).encode()


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


# What an engine is made with (SQLAlchemy's `json_serializer` and `json_deserializer`), by backend.
ENGINE_JSON: dict[str, dict[str, Any]] = {
    "sqlite": {"json_serializer": dumps, "json_deserializer": loads},
    "postgresql": {"json_serializer": dumps_utf8, "json_deserializer": loads},
}
