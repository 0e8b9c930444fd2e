"""`lessonbot broadcast preview --inactive-since`: a moment is read into UTC, and one UTC cannot hold (before year 1
or after 9999 once its offset is taken off) is refused in one line, exit status 2, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bot.cli import main
from tests.bot.test_cli_numbers import shared  # noqa: F401


@pytest.mark.parametrize("when", ["0001-01-01T00:00+14:00", "9999-12-31T23:59-14:00"])
def test_a_moment_utc_cannot_hold_gets_one_line(shared, capsys, when):
    assert main(["broadcast", "preview", "--inactive-since", when]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"lessonbot broadcast preview: --inactive-since {when!r}: expected 7d, a date like "
                                 "2026-11-01, or an ISO time\n")


def test_a_moment_with_an_offset_is_shown_in_utc(shared, capsys):
    assert main(["broadcast", "preview", "--inactive-since", "2026-11-01T09:00+09:00"]) == 0
    assert capsys.readouterr().out == "0 learners (not active since 2026-11-01 00:00 UTC).\n"
