"""Every command that uses the database checks it first, in one place: the embedded SQLite file migrates itself; a
database given by DATABASE_URL that is behind, or cannot be reached, gets one clear line and a non-zero exit."""

from __future__ import annotations

import io

import pytest

from bench.processes import DatabaseUnreachable, postgres_database
from bot.cli import main
from storage import migrate
from tests.conftest import POSTGRES_ADMIN_URL, missing


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
