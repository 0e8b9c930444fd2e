"""Logs: JSON lines with the conversation id, and never the learner's words at INFO."""

from __future__ import annotations

import json
import logging

from bot.channel import TransientSendError
from bot.core import Lessonbot
from bot.observability import JsonFormatter, conversation_id_var
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
