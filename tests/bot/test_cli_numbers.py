"""Every number a command takes is a whole number within bounds (bot/cli/numbers.py): one past a database integer is
refused by argparse with its usual one line and exit status 2, on SQLite and PostgreSQL alike, before any query
could overflow (an OverflowError on SQLite, a DataError on PostgreSQL); the largest id still works."""

from __future__ import annotations

import argparse

import pytest

from bot.cli import build_parser, main
from bot.text import BIGGEST_ID

TOO_BIG = "99999999999999999999999"


@pytest.fixture
def shared(database_url, tmp_path, monkeypatch):
    """The commands run against the test database (each of SQLite and PostgreSQL), from a folder with no .env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    return database_url


@pytest.mark.parametrize(("argv", "argument"), [
    (["outbox", "requeue", TOO_BIG], "argument ids"),
    (["outbox", "--failed", "--limit", TOO_BIG], "argument --limit"),
    (["broadcast", "cancel", TOO_BIG], "argument id"),
    (["broadcast", "status", TOO_BIG], "argument id"),
    (["payments", "list", "--limit", TOO_BIG], "argument --limit"),
    (["codes", "list", "--limit", TOO_BIG], "argument --limit"),
    (["codes", "create", "--course", "passwords-that-hold", "--days", TOO_BIG], "argument --days"),
])
def test_a_number_too_big_for_the_database_gets_one_line(shared, capsys, argv, argument):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.splitlines()[-1].endswith(f"error: {argument}: {TOO_BIG} is too big: at most {BIGGEST_ID}")


@pytest.mark.parametrize(("argv", "says"), [
    (["outbox", "--failed"], "No failed replies."),
    (["outbox", "requeue", str(BIGGEST_ID)], "Requeued 0 failed replies."),
    (["payments", "list", "--limit", str(BIGGEST_ID)], "No payments yet."),
    (["codes", "list", "--limit", str(BIGGEST_ID)], "No access codes yet"),
])
def test_the_largest_id_is_still_taken(shared, capsys, argv, says):
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(says)


def test_the_largest_broadcast_id_is_looked_up(shared, capsys):
    assert main(["broadcast", "status", str(BIGGEST_ID)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"lessonbot broadcast: There is no broadcast #{BIGGEST_ID}."]


@pytest.mark.parametrize(("argv", "says"), [
    (["outbox", "requeue", "-1"], "argument ids: '-1' is not a whole number"),
    (["outbox", "requeue", "²"], "argument ids: '²' is not a whole number"),  # str.isdigit, but no int
    (["codes", "list", "--limit", "0"], "argument --limit: 0 is not a positive number"),
    (["serve", "--port", "70000"], "argument --port: 70000 is too big: at most 65535"),
    (["rasa-actions", "--port", "0"], "argument --port: 0 is not a positive number"),
])
def test_a_number_out_of_its_range_is_named(capsys, argv, says):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)  # (only parsed: a server taking the port would run on)
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err


def _numeric_options(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_numeric_options(child))
        elif action.type in (int, float):
            found.append((parser.prog, action))
    return found


def test_every_number_a_command_takes_is_bounded():
    # the benches' whole numbers too; their durations and scales (floats) measure the bot and open no database
    unbounded = [f"{prog} {'/'.join(action.option_strings) or action.dest}"
                 for prog, action in _numeric_options(build_parser())
                 if not (prog.startswith("lessonbot bench ") and action.type is float)]
    assert unbounded == []
