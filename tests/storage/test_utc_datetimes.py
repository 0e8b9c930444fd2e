"""UTCDateTime on SQLite: its one-step conversions write the text SQLAlchemy's own steps write, and read it back
as the same aware UTC value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import TypeDecorator

from storage.models import UTCDateTime

SQLITE = sqlite.dialect()
TYPE = UTCDateTime().dialect_impl(SQLITE)
TO_TEXT = TYPE.bind_processor(SQLITE)
FROM_TEXT = TYPE.result_processor(SQLITE, None)
# What SQLAlchemy does without the shortcut: process_bind_param, then the dialect's own DATETIME text (and back).
SLOW_TO_TEXT = TypeDecorator.bind_processor(TYPE, SQLITE)
SLOW_FROM_TEXT = TypeDecorator.result_processor(TYPE, SQLITE, None)

VALUES = [
    datetime(2026, 12, 4, 16, 10, tzinfo=timezone.utc),
    datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
    datetime(1, 1, 1, tzinfo=timezone.utc),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
]


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_the_text_and_the_value_are_sqlalchemys_own(value: datetime) -> None:
    assert TO_TEXT is not None and FROM_TEXT is not None and SLOW_TO_TEXT is not None and SLOW_FROM_TEXT is not None
    text = TO_TEXT(value)
    assert text == SLOW_TO_TEXT(value)
    assert FROM_TEXT(text) == SLOW_FROM_TEXT(text) == value
    assert FROM_TEXT(text).tzinfo is timezone.utc


def test_text_without_microseconds_reads_as_sqlalchemy_reads_it() -> None:
    assert FROM_TEXT is not None and SLOW_FROM_TEXT is not None
    assert FROM_TEXT("2026-12-04 16:10:00") == SLOW_FROM_TEXT("2026-12-04 16:10:00")


def test_none_stays_none_and_a_naive_datetime_is_refused() -> None:
    assert TO_TEXT is not None and FROM_TEXT is not None
    assert TO_TEXT(None) is None and FROM_TEXT(None) is None
    with pytest.raises(ValueError, match="naive"):
        TO_TEXT(datetime(2026, 12, 4))


def test_text_with_an_offset_reads_as_the_same_instant() -> None:
    assert FROM_TEXT is not None and SLOW_FROM_TEXT is not None
    read = FROM_TEXT("2026-12-04 16:10:00+02:00")
    assert read == SLOW_FROM_TEXT("2026-12-04 16:10:00+02:00")
    assert read is not None and read.tzinfo is timezone.utc and read.hour == 14


@pytest.mark.parametrize(
    "text",
    ["2026-12-04 16:10:00.123456", "2026-12-04 16:10:00.000000", "2026-12-04 16:10:00.123+01",
     "2026-12-04T16:10:00.12345Z", "2026-12-04 16:10:00.1+0100"],
)
def test_text_of_the_written_length_reads_as_sqlalchemy_reads_it_offset_or_not(text: str) -> None:
    """Texts of the length this type writes take a shorter way; one written elsewhere with its own offset (or a Z)
    is still read as the instant it names."""
    assert FROM_TEXT is not None and SLOW_FROM_TEXT is not None
    read = FROM_TEXT(text)
    assert read == SLOW_FROM_TEXT(text) and read is not None and read.tzinfo is timezone.utc


def test_the_same_datetime_written_twice_gives_the_same_text() -> None:
    assert TO_TEXT is not None
    now = datetime(2026, 12, 4, 16, 10, 0, 5, tzinfo=timezone.utc)
    first = TO_TEXT(now)
    assert TO_TEXT(now) == first == "2026-12-04 16:10:00.000005"
    assert TO_TEXT(now + timedelta(microseconds=1)) == "2026-12-04 16:10:00.000006"
