"""Alembic environment: runs migrations on a sync connection handed in by `storage.migrate`, or on the URL given."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.db import make_sync_engine
from storage.postgres_statements import MIGRATION_ANSWER_TIMEOUT_SECONDS
from storage.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # `alembic` run by hand: Alembic works on a synchronous connection, so a sync engine of its own.
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set: storage.migrate's configuration sets it (lessonbot db upgrade)")
    engine = make_sync_engine(url, answer_timeout=MIGRATION_ANSWER_TIMEOUT_SECONDS)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # A migration, and its revision in alembic_version, commits on its own: one may then build an index outside a
        # transaction (PostgreSQL's CREATE INDEX CONCURRENTLY, in Alembic's autocommit block; migration 0024).
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
