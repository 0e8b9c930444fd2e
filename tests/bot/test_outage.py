"""A failure that repeats at every poll while the database is away: a few lines in the log, not one a second."""

from __future__ import annotations

import logging

from bot.outage import Outage


def test_an_outage_is_logged_once_then_once_a_minute_and_its_end_said_once(caplog):
    now = [0.0]
    outage = Outage(logging.getLogger("lessonbot.test"), "looking for pending conversations", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="lessonbot.test"):
        for second in range(150):  # a poll a second for two and a half minutes, each failing
            now[0] = float(second)
            try:
                raise ConnectionRefusedError("connection refused")
            except ConnectionRefusedError:
                outage.failed()
        now[0] = 150.0
        outage.ended()
        outage.ended()  # and the polls after it, which say nothing
    said = [(record.levelname, record.getMessage(), record.exc_info is not None) for record in caplog.records]
    assert said == [
        ("ERROR", "looking for pending conversations failed; trying again, and saying so once a minute while it "
                  "fails", True),
        ("WARNING", "looking for pending conversations still fails (61 times in 60 s): ConnectionRefusedError: "
                    "connection refused", False),
        ("WARNING", "looking for pending conversations still fails (121 times in 120 s): ConnectionRefusedError: "
                    "connection refused", False),
        ("WARNING", "looking for pending conversations works again, after 150 s and 150 failures", False),
    ]
    assert not outage.failing
