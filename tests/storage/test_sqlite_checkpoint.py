"""SQLite's write-ahead log is copied back into the database file by a thread while the process writes, not by the
event loop's commit that crosses the log's mark."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from sqlalchemy import text

from storage.db import Database


def _rows_in_the_file_alone(path: Path, copy: Path) -> int:
    """What the database file holds without its log: what has been checkpointed."""
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        found = connection.execute("SELECT name FROM sqlite_master WHERE name = 'notes'").fetchall()
        return connection.execute("SELECT count(*) FROM notes").fetchone()[0] if found else 0
    finally:
        connection.close()


async def test_what_the_process_writes_reaches_the_database_file_without_a_commit_copying_it(tmp_path: Path) -> None:
    path = tmp_path / "lessonbot.db"
    db = Database(f"sqlite:///{path}")
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        for n in range(40):  # a few dozen pages: far from the 1,000 at which a commit copies the log itself
            async with db.run() as transaction:
                await transaction.driver.run("INSERT INTO notes (body) VALUES (?)", (f"note {n}",))
        async with asyncio.timeout(5):
            while _rows_in_the_file_alone(path, tmp_path / "copy.db") < 40:
                await asyncio.sleep(0.02)
    finally:
        await db.dispose()


async def test_a_process_that_writes_nothing_copies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "lessonbot.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db = Database(f"sqlite:///{path}")
    try:
        async with db.run() as transaction:  # (its connection, and the copier with it, start)
            await transaction.driver.run("SELECT count(*) FROM notes", ())
        writer.execute("INSERT INTO notes (body) VALUES ('another process')")  # not this process's to copy
        await asyncio.sleep(0.3)
        assert _rows_in_the_file_alone(path, tmp_path / "copy.db") == 0
    finally:
        await db.dispose()
        writer.close()
