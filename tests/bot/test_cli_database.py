"""Every command that uses the database checks it first, in one place: the embedded SQLite file migrates itself; a
database given by DATABASE_URL that is behind, or cannot be reached, gets one clear line and a non-zero exit."""

from __future__ import annotations

import io

import pytest
from alembic.util import CommandError
from sqlalchemy import text

from bench.processes import DatabaseUnreachable, postgres_database
from bot.cli import main
from bot.cli.database import _shown
from storage import migrate
from storage.db import make_sync_engine
from tests.authoring.course_files import PAID_EXAMPLE
from tests.conftest import POSTGRES_ADMIN_URL, missing

NEWER = ("This database was migrated by a newer Lessonbot (revision 0099): run that version, or restore a backup made "
         "before the upgrade.")


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A clean working folder (no .env) and no database settings from the outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    return tmp_path


@pytest.mark.parametrize("argv", [["serve"], ["dispatch"], ["outbox"], ["chat", "--user", "pat"], ["course", "list"],
                                  ["certificate", "verify", "LB-K3FQ-7XJD-2MZA-PQ4R"]])
def test_a_database_behind_the_code_stops_the_command_with_one_line(here, unmigrated_url, monkeypatch, capsys, argv):
    monkeypatch.setenv("DATABASE_URL", unmigrated_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # `chat` would read lines; it must not get that far

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == ["The database schema is not up to date: run `lessonbot db upgrade` first."]
    assert out == ""
    assert migrate.applied_revisions(unmigrated_url) == frozenset()  # a shared database is migrated only on request


def test_the_embedded_database_migrates_itself_on_first_use(here, capsys):
    assert main(["outbox"]) == 0
    assert capsys.readouterr().out.startswith("pending=0")
    assert migrate.applied_revisions(f"sqlite:///{here / 'var' / 'lessonbot.db'}") == migrate.head_revisions()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres@127.0.0.1:1/lessonbot", 'connection to server at "127.0.0.1", port 1 failed'),
        ("postgresql://nobody:secret@127.0.0.1:5432/postgres", 'role "nobody" does not exist'),
    ],
)
def test_a_database_that_cannot_be_reached_is_named_without_its_password(here, monkeypatch, capsys, url, reason):
    if "5432" in url:
        try:
            with postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_reachable"):
                pass
        except DatabaseUnreachable as exc:
            missing(str(exc))
    monkeypatch.setenv("DATABASE_URL", url)

    for argv in (["outbox"], ["db", "upgrade"], ["db", "current"]):
        assert main(argv) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("Cannot open the database postgresql://") and reason in line
        assert "secret" not in line and line.endswith(
            "Check DATABASE_URL (postgresql://user:password@host:5432/name) and that the server is up."
        )


def test_commands_that_need_no_database_do_not_open_one(here, capsys):
    assert main(["course", "validate", str(here / "missing")]) == 1
    assert not (here / "var" / "lessonbot.db").exists()


def _migrated_by_a_newer_lessonbot(url: str) -> frozenset[str]:
    """Stamp the database as a newer Lessonbot leaves it: this code's heads, the latest moved on to 0099, a
    revision this code has no migration for."""
    latest = max(migrate.head_revisions())
    stamped = (migrate.head_revisions() - {latest}) | {"0099"}
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        for revision in stamped:
            connection.execute(text("INSERT INTO alembic_version VALUES (:revision)"), {"revision": revision})
    engine.dispose()
    return stamped


def test_a_database_a_newer_lessonbot_migrated_is_named_so(here, unmigrated_url, monkeypatch, capsys):
    stamped = _migrated_by_a_newer_lessonbot(unmigrated_url)
    monkeypatch.setenv("DATABASE_URL", unmigrated_url)

    for argv in (["outbox"], ["course", "list"], ["db", "upgrade"]):  # not "behind", not "cannot open"
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err.splitlines() == [NEWER] and out == ""
    assert main(["db", "current"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("current: ") and "0099" in out and err.splitlines() == [NEWER]
    assert migrate.applied_revisions(unmigrated_url) == stamped  # left as it was


def test_the_embedded_database_is_not_migrated_back_from_a_newer_lessonbot(here, capsys):
    url = f"sqlite:///{here / 'var' / 'lessonbot.db'}"
    stamped = _migrated_by_a_newer_lessonbot(url)

    for argv in (["outbox"], ["db", "upgrade"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.splitlines() == [NEWER]
    assert migrate.applied_revisions(url) == stamped


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["outbox"]])
def test_a_schema_alembic_cannot_follow_is_no_connection_problem(here, monkeypatch, capsys, argv):
    def upgrade(url: str, revision: str = "heads", **options: object) -> None:
        raise CommandError("Can't locate revision identified by 'abc123'")

    monkeypatch.setattr(migrate, "upgrade", upgrade)
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "The database schema cannot be brought up to date: Can't locate revision identified by 'abc123'. If another "
        "version of Lessonbot migrated it, run that version, or restore a backup."
    ]


def test_a_url_sqlalchemy_cannot_read_is_still_shown_in_one_line():
    assert _shown("sqlite") == "sqlite:…"
    assert _shown("postgresql://lb:secret@db:5432/lessonbot") == "postgresql://lb:***@db:5432/lessonbot"



def test_an_embedded_database_another_process_is_writing_to_says_so(here):
    """(The commands wait SQLite's busy timeout, 15 s, before they give up: the line they print is checked here.)"""
    import sqlite3

    from bot.cli.database import cannot_open
    from bot.config import load_settings

    assert main(["outbox"]) == 0  # made and migrated
    path = here / "var" / "lessonbot.db"
    writer, late = sqlite3.connect(path, isolation_level=None), sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # as a process in the middle of writing holds it
        with pytest.raises(sqlite3.OperationalError) as locked:
            late.execute("BEGIN IMMEDIATE")
    finally:
        writer.close()
        late.close()
    line = cannot_open(load_settings(_env_file=None), locked.value)
    assert line.startswith("Cannot open the database sqlite:///") and "database is locked" in line
    assert line.endswith("Another process is writing to it (a running `lessonbot serve`, or a long import): try again "
                         "in a moment, or put the bot on PostgreSQL (DATABASE_URL) to run several processes at once.")


@pytest.mark.parametrize("argv", [["course", "import", str(PAID_EXAMPLE)],
                                  ["codes", "create", "--course", "passwords-that-hold"],
                                  ["admin", "role", "grant", "telegram:1", "admin"]])
def test_a_database_that_refuses_a_write_after_the_check_stops_the_command_with_one_line(here, monkeypatch, capsys,
                                                                                           argv):
    """A database this user may only read (a replica: every transaction read-only) passes the schema check, which
    reads; the command's first write is refused: one line says so and what to point DATABASE_URL at, no traceback."""
    try:
        with postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_read_only") as url:
            migrate.upgrade(url)
            monkeypatch.setenv("DATABASE_URL", url)
            assert main(["course", "import", str(PAID_EXAMPLE)]) == 0
            capsys.readouterr()
            monkeypatch.setenv("DATABASE_URL", url + "?options=-c%20default_transaction_read_only%3Don")
            assert main(argv) == 1
            said = capsys.readouterr().err.strip()
    except DatabaseUnreachable as exc:
        missing(str(exc))
    assert len(said.splitlines()) == 1 and "Traceback" not in said
    assert said.startswith("The database postgresql") and "refused the command" in said
    assert said.endswith("DATABASE_URL names a database this user may only read (a replica, or read-only "
                         "transactions): point it at the primary.")


@pytest.mark.parametrize("given", [False, True])
def test_asking_which_schema_a_database_not_made_yet_holds_makes_none(here, monkeypatch, capsys, given):
    """`lessonbot db current` before any database exists: it says there is none yet and how to make one, and leaves
    nothing behind (an empty file would pass for a database later)."""
    path = here / ("given.db" if given else "var/lessonbot.db")
    if given:
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")

    assert main(["db", "current"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"No database yet at {path}: `lessonbot db upgrade` makes it."], (out, err)
    assert not path.exists()
