"""`lessonbot bench round-trips` at a small scale: both sides measured in alternating rounds, and reported."""

from __future__ import annotations

import json

import psycopg

from bot.cli import main
from storage import postgres_statements
from tests.conftest import POSTGRES_ADMIN_URL, missing


def test_both_sides_are_measured_in_alternating_rounds_and_the_looks_are_left_as_they_were(capsys):
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        missing(str(exc))
    code = main(["bench", "round-trips", "--trips", "200", "--rounds", "2", "--connections", "2", "--json",
                 "--postgres", POSTGRES_ADMIN_URL])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [side["side"] for side in report["sides"]] == ["with the looks", "without"]
    assert all(side["rounds"] == 2 and side["cpu_us"] > 0 and side["wall_us"] > 0 for side in report["sides"])
    assert report["trips_a_round"] == 200 and report["connections"] == 2
    assert report["machine"]["cpu"] and len(report["load_average_before"]) == 3
    assert postgres_statements.RECHECK_SECONDS == report["recheck_seconds"] == 0.1
