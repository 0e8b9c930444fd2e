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
# /lessonbot commands that act on a person the lead mentions ("team admin @ann"): Slack escapes the mention (the
# manifest's should_escape), and the member id it carries is kept for them; any other mention stays a name.
NAMING_A_MEMBER = ("team admin",)

_TYPED: dict[str, str] = {core: slash for slash, core in SLASH_COMMANDS.items() if core}  # /next → /lesson, …
# A command named in text: "/" and a word, at the start or after a space, an opening bracket or a quote (not in a path
# or a link: "24/7", "https://…/help", "/etc/passwd").
_NAMED = re.compile(r"(?<![\w/.:~`-])/([a-z][a-z_]{1,31})\b(?!/)")
_CODE = re.compile(r"(`+)[^`]*?\1")  # a code span: left as written


def as_typed_in_slack(text: str, commands: frozenset[str]) -> str:
    """`text` with every command of the core it names (`commands`: "/help", "/stop", …, the wiring's list) written as a
    person types it in Slack. Other words after a slash (a path, a word the core has no command for) and code spans
    stay as they are."""
    if "/" not in text or not commands:
        return text

    def typed(found: re.Match[str]) -> str:
        command = "/" + found[1]
        if command not in commands or command in SLASH_COMMANDS or command == TEAM_COMMAND:
            return found[0]
        return _TYPED.get(command) or f"{TEAM_COMMAND} {found[1]}"

    pieces, start = [], 0
    for code in _CODE.finditer(text):
        pieces += [_NAMED.sub(typed, text[start:code.start()]), code[0]]
        start = code.end()
    pieces.append(_NAMED.sub(typed, text[start:]))
    return "".join(pieces)
