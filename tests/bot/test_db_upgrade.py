"""`lessonbot db upgrade`: a database that answers but refuses a migration is not "cannot open" (a schema in the way,
a user without the rights get their own advice), and an upgrade another process is running is waited for out loud,
or not at all when there is nothing to do."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillWaiting
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.processes import DatabaseUnreachable, postgres_database
from bot.cli import main
from storage import migrate
from storage.db import make_sync_engine
from tests.bot.test_cli_database import here  # noqa: F401 (a fixture)
from tests.conftest import POSTGRES_ADMIN_URL, missing


def _execute(url: str, *statements: str) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


# what went wrong ---------------------------------------------------------------------------------------------------


def test_a_table_in_the_way_is_a_schema_conflict_not_a_connection_problem(here, unmigrated_url, monkeypatch, capsys):
    _execute(unmigrated_url, "CREATE TABLE users (id INTEGER PRIMARY KEY)")  # another application's table
    monkeypatch.setenv("DATABASE_URL", unmigrated_url)

    assert main(["db", "upgrade"]) == 2
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    conflict = ('relation "users" already exists' if unmigrated_url.startswith("postgresql")
                else "table users already exists")
    assert line.startswith("The database ") and "Cannot open" not in line and "server is up" not in line
    assert f"holds a schema that conflicts with Lessonbot's migrations: {conflict}. " in line
    assert line.endswith("Tables not made by `lessonbot db upgrade` are in the way (another application's, or made by "
                         "hand): give Lessonbot a database of its own (DATABASE_URL), or restore a backup.")
    assert out == "" and migrate.applied_revisions(unmigrated_url) == frozenset()


@pytest.fixture
def a_user_without_rights() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database owned by postgres, and the URL of a role that may connect to it but create nothing."""
    role = f"lessonbot_weak_{uuid.uuid4().hex[:8]}"
    try:
        with postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_rights") as url:
            _execute(url, f"CREATE ROLE {role} LOGIN", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            try:
                yield role, make_url(url).set(username=role, password=None).render_as_string(hide_password=False)
            finally:
                engine = make_sync_engine(url)
                with engine.connect() as connection:  # the role's sessions end before the database is dropped
                    connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                            "WHERE usename = :role"), {"role": role})
                    connection.commit()
                engine.dispose()
        _execute(POSTGRES_ADMIN_URL, f"DROP ROLE IF EXISTS {role}")
    except DatabaseUnreachable as exc:
        missing(str(exc))


def test_a_user_without_the_right_to_change_the_schema_is_told_so(here, a_user_without_rights, monkeypatch, capsys):
    role, url = a_user_without_rights
    monkeypatch.setenv("DATABASE_URL", url)

    assert main(["db", "upgrade"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    name = make_url(url).database
    assert line == (
        f"The database user {role} may not change the schema of {url}: permission denied for schema public. Run "
        "`lessonbot db upgrade` with a DATABASE_URL naming the database's owner, or have the owner give "
        f"{role} the rights (ALTER DATABASE {name} OWNER TO {role}; or GRANT CREATE ON SCHEMA public TO {role})."
    )


# another upgrade under way -----------------------------------------------------------------------------------------


@contextmanager
def another_upgrade_under_way(url: str) -> Iterator[None]:
    """Hold the upgrade lock `storage.migrate` takes, as another process upgrading the database would."""
    if url.startswith("postgresql"):
        engine = make_sync_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": migrate.UPGRADE_LOCK})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": migrate.UPGRADE_LOCK})
                connection.commit()
        engine.dispose()
        return
    database = Path(str(make_url(url).database))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.upgrading", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _upgrade(here: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(here / "var"), "DATABASE_URL": url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=here,
    )


def test_a_database_already_current_needs_no_turn(here, database_url):
    with another_upgrade_under_way(database_url):
        upgrade = _upgrade(here, database_url)
        try:
            out, err = upgrade.communicate(timeout=60)
        finally:
            upgrade.kill()
    assert upgrade.returncode == 0 and err == ""
    assert out == f"Database is at schema {', '.join(sorted(migrate.head_revisions()))} already: nothing to do.\n"


def test_an_upgrade_waits_for_another_and_says_so_once(here, unmigrated_url):
    with ThreadPoolExecutor(1) as reader, another_upgrade_under_way(unmigrated_url):
        upgrade = _upgrade(here, unmigrated_url)
        assert upgrade.stderr is not None
        try:
            first = reader.submit(upgrade.stderr.readline).result(timeout=60)
        except StillWaiting:
            first = ""
        assert upgrade.poll() is None  # still waiting: the other upgrade holds the lock
    try:
        out, rest = upgrade.communicate(timeout=120)
    finally:
        upgrade.kill()
    assert first.startswith("Waiting for another upgrade to finish") and rest == "" and upgrade.returncode == 0
    assert out == f"Database is at schema {', '.join(sorted(migrate.head_revisions()))}.\n"
    assert migrate.applied_revisions(unmigrated_url) == migrate.head_revisions()
