"""How JSON columns are written and read, on every engine: with orjson, which takes a reply's payload or a
conversation's state to text and back several times faster than the standard library (a turn reads one and writes
the other). Keys that are not strings are written as strings, as the standard library writes them."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """JSON text (SQLite stores text)."""
    return orjson.dumps(value, option=_OPTIONS).decode()


def dumps_utf8(value: Any) -> bytes:
    """JSON as UTF-8 bytes, what psycopg sends (it takes bytes as they are)."""
    return orjson.dumps(value, option=_OPTIONS)


loads = orjson.loads

# What an engine is made with (SQLAlchemy's `json_serializer` and `json_deserializer`), by backend.
ENGINE_JSON: dict[str, dict[str, Any]] = {
    "sqlite": {"json_serializer": dumps, "json_deserializer": loads},
    "postgresql": {"json_serializer": dumps_utf8, "json_deserializer": loads},
}
