"""Alembic migrations, driven from code (`lessonbot db upgrade`), so no alembic.ini has to sit beside the data."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import make_sync_engine

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


def upgrade(url: str, revision: str = "heads") -> None:
    # Alembic runs migrations on a synchronous connection: a sync engine of its own, for this one command. Each
    # migration commits on its own (migrations/env.py), so one may run statements outside a transaction.
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


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
