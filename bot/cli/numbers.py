"""The one type of every number a command takes (`type=whole(...)`): a whole number of ASCII digits within bounds, as
the chat's /admin commands read them (`bot.text.whole_number`).

An id or a limit past 64 bits would overflow the database column it is compared with (an OverflowError on SQLite, a
DataError on PostgreSQL), a port past 65535 the socket: argparse refuses such a value with its usual one line
(`lessonbot outbox: error: argument ids: …`) and exit status 2 before the command opens anything.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bot.text import BIGGEST_ID, whole_number


def whole(least: int = 0, most: int = BIGGEST_ID) -> Callable[[str], int]:
    """An argparse `type` taking a whole number from `least` to `most` (a database id's range by default)."""

    def parse(text: str) -> int:
        value = whole_number(text, most=most)
        if value is None:
            digits = text.strip()
            if digits.isascii() and digits.isdigit():
                shown = digits if len(digits) <= 24 else f"{digits[:20]}… ({len(digits)} digits)"
                raise argparse.ArgumentTypeError(f"{shown} is too big: at most {most}")
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number")
        if value < least:
            raise argparse.ArgumentTypeError(
                f"{value} is not a positive number" if least == 1 else f"{value} is too small: at least {least}"
            )
        return value

    parse.__name__ = "whole number"  # (what argparse would name the type in a message of its own)
    return parse
