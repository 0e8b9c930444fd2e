"""The scheduler tests' set-ups: a database, or a whole Lessonbot recording what it sends, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import Settings
from bot.core import Lessonbot
from storage.db import Database
from tests.support import RecordingChannel


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The test's database (each test runs on SQLite and on PostgreSQL, on empty tables), disposed of after it."""
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def recording_bot(settings: Settings) -> AsyncIterator[tuple[Lessonbot, RecordingChannel]]:
    """A Lessonbot on the test's database with one channel that records what it sends; stopped after the test."""
    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel])
    yield bot, channel
    await bot.stop()
