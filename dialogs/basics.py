"""Greeting, help, and the reply to anything no dialog expects."""

from __future__ import annotations

from dialogs.base import Command, Turn

WELCOME = (
    "Hi{name}! I'm Lessonbot. I send you short lessons, quiz you so they stick, "
    "and answer questions about your course.\n\n"
    "Send /help to see what I can do."
)


async def start(turn: Turn, _args: str) -> None:
    name = turn.user.display_name or turn.message.sender_name
    turn.say(WELCOME.format(name=f" {name}" if name else ""), choices=[("Show commands", "/help")])


async def show_help(turn: Turn, _args: str) -> None:
    from dialogs import COMMANDS  # the full list, including commands of dialogs added later

    lines = ["Here is what you can send me:"]
    lines += [f"/{command.name} — {command.summary}" for command in COMMANDS if command.name != "admin"]
    if turn.is_admin:
        lines.append("/admin help — commands for admins")
    turn.say("\n".join(lines))


async def fallback(turn: Turn) -> None:
    """Anything no command or dialog step expects. The question answerer takes this seam over."""
    turn.say(
        "I'm not sure what to do with that yet. Send /help to see what I can do.",
        choices=[("Show commands", "/help")],
    )


COMMANDS = (
    Command("start", start, "say hello and get started", synonyms=("hi", "hello")),
    Command("help", show_help, "list what I can do", synonyms=("help", "commands")),
)
