"""SQLite's write-ahead log copied back into the database file on a thread of its own, while the process writes.

In WAL mode a commit appends the pages it changed to the log, and once the log holds 1,000 pages the commit that
crossed the mark copies them all back into the database file (a checkpoint: a write of every page and two syncs)
before it returns. The hot path's connection runs on the event loop (storage/sqlite_inline.py), so that commit held
every request and turn of the process while it copied: a few milliseconds every few hundred commits, about 50 µs a
commit on average on this machine (the same three statements committed 5,000 times: 122 µs a commit with the
checkpoints, 72 µs without). Here a thread copies what the log holds every `every` seconds while the process has
written, on a connection of its own in PASSIVE mode (which neither waits for nor holds up a writer), so the commit
that crosses the mark finds little left to copy. What is durable, and when, does not change: the same pages and the
same syncs, done elsewhere; the log is still bounded by the writers' own checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)


class Checkpointer:
    """Checkpoints of the SQLite file `path` on a thread, every `every` seconds in which `written()` (a count of the
    changes this process made) moved. `start` from the event loop; `close` before the process's connections close."""

    def __init__(self, path: str, written: Callable[[], int], *, every: float = 0.05) -> None:
        self._path = path
        self._written = written
        self._every = every
        self._connection: sqlite3.Connection | None = None  # the thread's, opened at the first checkpoint
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-checkpoints")

    async def close(self) -> None:
        """Stop after the checkpoint under way (a thread cannot be interrupted), then close its connection."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        copied = 0  # (`written` counts from the connection's opening, when this is made)
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self._every)
                return
            except TimeoutError:
                pass
            written = self._written()
            if written != copied:
                copied = written
                await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # (a writer's own checkpoint under way: the next one copies what is left)
            log.debug("checkpoint skipped", extra={"error": str(exc)})
