"""Slack's slash commands, both ways: what each one the app registers means to the core, and how a command the core
names in a reply is typed in Slack.

Slack takes only the slash commands an app registers (the manifest's); any other "/word" is refused by Slack's own
client before it reaches the bot. So a reply that says "send /stop" is rewritten for Slack as "/lessonbot stop", and
one that says "send /next" as "/lesson", the registered command that means it.
"""

from __future__ import annotations

import re

# Slash command → what the core's dialogs understand. /ask sends its question as free text (the question answerer
# takes free text); the others name the commands the lesson, quiz and payment dialogs offer (the payment ones answer
# a channel in the buyer's direct messages).
SLASH_COMMANDS: dict[str, str] = {
    "/lesson": "/next",
    "/quiz": "/review",
    "/progress": "/progress",
    "/ask": "",
    "/courses": "/courses",
    "/buy": "/buy",
    "/purchases": "/purchases",
    "/redeem": "/redeem",
}
# /lessonbot WORDS: the team commands and every other command by its name ("/lessonbot leaderboard" is /leaderboard).
TEAM_COMMAND = "/lessonbot"

_TYPED: dict[str, str] = {core: slash for slash, core in SLASH_COMMANDS.items() if core}  # /next → /lesson, …
# A command named in text: "/" and a word, at the start or after a space or an opening bracket or quote (not in a
# path or a link, "24/7" or "https://…/help").
_NAMED = re.compile(r"(?<![\w/.:~-])/([a-z][a-z_]{1,31})\b")


def as_typed_in_slack(text: str) -> str:
    """`text` with every command it names written as a person types it in Slack."""
    if "/" not in text:
        return text

    def typed(found: re.Match[str]) -> str:
        command = "/" + found[1]
        if command == TEAM_COMMAND or command in SLASH_COMMANDS:
            return command
        return _TYPED.get(command) or f"{TEAM_COMMAND} {found[1]}"

    return _NAMED.sub(typed, text)
