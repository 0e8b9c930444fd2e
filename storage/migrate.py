"""Alembic migrations, driven from code (`lessonbot db upgrade`), so no alembic.ini has to sit beside the data."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import make_sync_engine
from storage.postgres_statements import MIGRATION_ANSWER_TIMEOUT_SECONDS

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revisions() -> frozenset[str]:
    """What alembic_version holds once `upgrade` has applied every head (rooms add migrations side by side).

    A head that another head `depends_on` is not recorded once its dependant is applied, so it is left out here.
    """
    script = ScriptDirectory(str(MIGRATIONS))
    heads = set(script.get_heads())
    covered = {
        head
        for head in heads
        if any(head in {r.revision for r in script.iterate_revisions(other, "base")} for other in heads - {head})
    }
    return frozenset(heads - covered)


def upgrade(url: str, revision: str = "heads", *, on_wait: Callable[[], None] | None = None) -> None:
    """Apply the migrations up to `revision`. `on_wait` is called once if another upgrade of the same database is
    under way and this one has to wait for it to finish (`lessonbot db upgrade` says so)."""
    # Alembic runs migrations on a synchronous connection: a sync engine of its own, for this one command. Each
    # migration commits on its own (migrations/env.py), so one may run statements outside a transaction; and so two
    # processes upgrading at once (the embedded database migrates itself on first use) take turns (`_alone`).
    engine = make_sync_engine(url, answer_timeout=MIGRATION_ANSWER_TIMEOUT_SECONDS)
    try:
        with engine.connect() as connection, _alone(connection, on_wait):
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


UPGRADE_LOCK = 0x6C62_7570  # PostgreSQL's advisory lock of an upgrade under way ("lbup")
_LOCK_RETRY_SECONDS = 0.2


@contextmanager
def _alone(connection: Connection, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """One upgrade at a time against a database; another waits until it is done (calling `on_wait` once as it starts
    to), and then finds the revisions it applied. PostgreSQL: an advisory lock of the session, tried again every
    0.2 s with no transaction open meanwhile (a waiting statement would hold a snapshot that an index built
    CONCURRENTLY waits for). SQLite: a lock on a file beside the database's (none for a database in memory)."""
    if connection.dialect.name == "postgresql":
        waiting = False
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": UPGRADE_LOCK}).scalar():
            connection.commit()
            if not waiting and on_wait is not None:
                on_wait()
            waiting = True
            time.sleep(_LOCK_RETRY_SECONDS)
        connection.commit()
        try:
            yield
        finally:
            with suppress(SQLAlchemyError):  # (a connection that broke let go of the lock with its session)
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK})
                connection.commit()
        return
    database = connection.engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.upgrading", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (let go when the file is closed, or the process ends)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def make_revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the models (for developers)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)


def applied_revisions(url: str) -> frozenset[str]:
    """The revisions recorded in the database at `url`; empty for a database never migrated. Raises SQLAlchemy's
    OperationalError when the database cannot be reached."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            return frozenset(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    async with engine.connect() as connection:
        heads = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    return frozenset(heads)
