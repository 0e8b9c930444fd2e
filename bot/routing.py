"""Which dialog answers a message: a command, the dialog in progress, or the fallback."""

from __future__ import annotations

import re

import dialogs
from dialogs.base import Command, Turn

# "/start", "/start@LessonBot payload", "/admin stats"
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]{1,32})(?:@\S+)?(?:\s+(?P<args>.*))?$", re.DOTALL)


def parse_command(text: str) -> tuple[str, str] | None:
    """Split "/name args" into (name, args); plain text that is only a command's synonym counts too."""
    match = _COMMAND.match(text.strip())
    if match:
        return match["name"].lower(), (match["args"] or "").strip()
    word = text.strip().lower()
    for command in dialogs.COMMANDS:
        if word in command.synonyms:
            return command.name, ""
    return None


def find_command(name: str) -> Command | None:
    return next((command for command in dialogs.COMMANDS if command.name == name), None)


async def respond(turn: Turn) -> None:
    parsed = parse_command(turn.text)
    if parsed is not None:
        name, args = parsed
        command = find_command(name)
        if command is None:
            turn.say(f"I don't know the command /{name}. Send /help to see what I can do.")
            return
        await command.handler(turn, args)
        return
    await dialogs.fallback(turn)
