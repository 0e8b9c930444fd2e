"""Logs: JSON lines with the conversation id, and never the learner's words at INFO."""

from __future__ import annotations

import io
import json
import logging
import sys

from bot.channel import TransientSendError
from bot.core import Lessonbot
from bot.observability import JsonFormatter, configure_logging, conversation_id_var
from tests.support import RecordingChannel, Transcript

SECRET_WORDS = "my card number is 4242 4242 4242 4242"


def test_json_lines_carry_the_conversation_id_and_extras():
    formatter = JsonFormatter()
    record = logging.LogRecord("bot.pipeline", logging.INFO, __file__, 1, "processed %s", ("ok",), None)
    record.inbound_id = 7
    token = conversation_id_var.set(42)
    try:
        line = json.loads(formatter.format(record))
    finally:
        conversation_id_var.reset(token)
    assert line["message"] == "processed ok" and line["conversation_id"] == 42 and line["inbound_id"] == 7
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")


async def test_message_text_never_reaches_info_logs(settings, caplog):
    channel = RecordingChannel(failures=[TransientSendError("platform hiccup")])
    bot = Lessonbot(settings, [channel])
    caplog.set_level(logging.INFO)
    try:
        transcript = Transcript(bot, channel)
        await transcript.say(SECRET_WORDS)
        await transcript.say("/admin stats")
    finally:
        await bot.stop()
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any("send postponed" in line for line in lines)  # something was logged at INFO
    assert not any("4242" in line for line in lines)
    assert not any(settings.secret_key in line for line in lines)


def test_logs_are_readable_lines_on_a_terminal_and_json_elsewhere(tmp_path):
    import os

    from bot.observability import configure_logging

    def log_once(stream) -> None:
        configure_logging("INFO", "auto", stream=stream)  # LOG_FORMAT's default
        try:
            logging.getLogger("lessonbot").info("serving on %s", "http://127.0.0.1:8000")
        finally:
            configure_logging("INFO", "text")
        stream.flush()

    leader, follower = os.openpty()
    with open(follower, "w") as terminal, open(leader, "rb", buffering=0) as screen:
        log_once(terminal)
        shown = screen.read(4096).decode()
    assert "INFO lessonbot: serving on http://127.0.0.1:8000" in shown and "{" not in shown

    with open(tmp_path / "log", "w") as file:
        log_once(file)
    assert json.loads((tmp_path / "log").read_text())["message"] == "serving on http://127.0.0.1:8000"


def test_logs_go_to_the_stderr_of_the_moment_not_one_closed_since(monkeypatch):
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    try:
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        configure_logging("INFO", "text")
        sys.stderr.close()  # as a test runner closes the stream it captured into
        monkeypatch.setattr(sys, "stderr", now := io.StringIO())
        logging.getLogger("scheduler.clock").info("clock started")
        assert now.getvalue().endswith("INFO scheduler.clock: clock started\n")
    finally:
        root.handlers[:], root.level = kept[0], kept[1]
