"""Leader election: exactly one process among all runs the dispatcher and the clock; the others stand by.

APScheduler 3 runs a job once per process that shares its job store, so the only safe way to run it in more than one
process is to let just one process run it. That process is elected through the database:

- PostgreSQL: a session-level advisory lock held on a dedicated connection. When the leader dies its connection
  closes and the server releases the lock at once; a standby takes over at its next try (every `check_seconds`).
- SQLite: a row in `leader_leases` with an expiry the leader renews; a standby takes over once it has expired.

Either way a leader checks its hold every `check_seconds` (on SQLite at least three times a lease, whatever the two
are set to) and stops its work the moment it cannot confirm it. Work
that must never run twice also carries an idempotency key (a unique constraint), which covers the few seconds in
which a partitioned old leader has not yet noticed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.outage import Outage
from storage.db import Database
from storage.models import LeaderLease, utcnow
from storage.queries import insert_ignoring_conflicts, rows_affected

log = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock from a role name."""
    return int.from_bytes(hashlib.sha256(f"lessonbot:{name}".encode()).digest()[:8], "big", signed=True)


class Leadership:
    def __init__(
        self,
        db: Database,
        name: str,
        *,
        owner: str,
        check_seconds: float = 5.0,
        lease_seconds: float = 15.0,
    ) -> None:
        self.db = db
        self.name = name
        self.owner = owner
        self.check_seconds = check_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.is_leader = False
        self._connection: AsyncConnection | None = None

    async def hold(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever; while elected, run `work`, cancelling it the moment leadership is lost. While the
        database is away the failed tries are logged as an `Outage`: once, then once a minute, then when it works."""
        election = Outage(log, f"leader election for {self.name}")
        while True:
            try:
                elected = await self._acquire()
            except Exception:
                election.failed()
                elected = False
            else:
                election.ended()
            if elected:
                await self._lead(work)
            await asyncio.sleep(self.check_seconds)

    async def _lead(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.is_leader = True
        log.info("elected: this process now runs %s", self.name)
        task = asyncio.get_running_loop().create_task(work())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._confirm_every())
                if done:
                    task.result()  # surfaces the work's exception, if any
                    log.warning("%s stopped on its own; standing down", self.name)
                    return
                if not await self._still_ours():
                    log.warning("lost leadership of %s; stopping it", self.name)
                    return
        except Exception:
            log.exception("%s failed; standing down so another process can take over", self.name)
        finally:
            self.is_leader = False
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self._release()

    def _confirm_every(self) -> float:
        """How often the leader confirms its hold: every `check_seconds`, and on SQLite well within the lease it
        renews (a lease shorter than the checks would run out between two, and a standby take over beside a leader
        alive and well)."""
        if self.db.backend == "postgresql":
            return self.check_seconds
        return min(self.check_seconds, self.lease.total_seconds() / 3)

    # PostgreSQL: an advisory lock on a connection of our own; SQLite: a lease row -----------------------------

    async def _acquire(self) -> bool:
        if self.db.backend == "postgresql":
            connection = await self.db.engine.connect()
            try:
                locked = await connection.scalar(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(self.name)}
                )
                await connection.commit()
            except Exception:
                await connection.close()
                raise
            if locked:
                self._connection = connection
                return True
            await connection.close()
            return False
        return await self._renew_lease()

    async def _still_ours(self) -> bool:
        try:
            if self._connection is not None:
                await self._connection.scalar(text("SELECT 1"))
                await self._connection.commit()
                return True
            return await self._renew_lease()
        except Exception as exc:
            log.warning("could not confirm leadership", extra={"role": self.name, "error": str(exc)})
            return False

    async def _release(self) -> None:
        try:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                try:
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.name)})
                    await connection.commit()
                finally:
                    await connection.close()
            else:
                async with self.db.transaction() as session:
                    await session.execute(
                        update(LeaderLease)
                        .where(LeaderLease.name == self.name, LeaderLease.owner == self.owner)
                        .values(until=utcnow())
                    )
        except Exception as exc:
            log.warning("could not release leadership cleanly", extra={"role": self.name, "error": str(exc)})

    async def _renew_lease(self) -> bool:
        now = utcnow()
        async with self.db.transaction() as session:
            await session.execute(
                insert_ignoring_conflicts(session, LeaderLease, {"name": self.name, "owner": self.owner, "until": now})
            )
            result = await session.execute(
                update(LeaderLease)
                .where(LeaderLease.name == self.name)
                .where((LeaderLease.owner == self.owner) | (LeaderLease.until <= now))
                .values(owner=self.owner, until=now + self.lease)
            )
            return rows_affected(result) == 1
