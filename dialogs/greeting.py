"""/start and /help, and the replies to what nothing can take: an unknown command, a stale button, a message with no
words to read, a message when no question answerer runs in this process."""

from __future__ import annotations

import re

from bot.messages import LANGUAGE
from bot.text import code_letters, fold
from dialogs import flow, onboarding, roles
from dialogs.i18n import N_, Translator, supported
from dialogs.learner import is_set_up, learner_of, name_of, tr
from dialogs.review import due_reviews
from dialogs.turn import Command, Turn
from storage.learners import Learner
from storage.payments import access_code


async def start(turn: Turn, args: str) -> None:
    """/start: onboarding for someone new (or where they left it), a welcome back for a learner who is set up.
    `args`: a start link's payload (`onboarding.begin`); an access code in it is redeemed for one set up, as /redeem
    does."""
    learner = await learner_of(turn)
    if not is_set_up(learner):
        await onboarding.begin(turn, args)
        return
    if args and await access_code(turn.session, code_letters(args)) is not None:
        await onboarding.redeem_linked_code(turn, args)
        return
    _ = tr(turn)
    choices = [(_("Next lesson"), "lesson:next")]
    if await due_reviews(turn):
        choices.append((_("Review"), "/review"))
    turn.say(_("Hi {name}, welcome back! Send /next for your next lesson, or /help to see what I can do.",
               name=name_of(turn)).replace(" ,", ","),
             choices=[*choices, (_("Show commands"), "/help")])


# The first word of a greeting that says which language its writer speaks (other than English, the default)
_GREETED_IN = {"hola": "es", "buenas": "es", "buenos": "es"}
_FIRST_WORD = re.compile(r"\w+")


def language_greeted_in(text: str) -> str | None:
    """The language of a greeting that opens `text` ("¡Hola! Quiero empezar" → "es"), or None."""
    first = _FIRST_WORD.search(fold(text))
    return _GREETED_IN.get(first[0]) if first else None


def greeted(turn: Turn, learner: Learner) -> None:
    """Someone not set up yet, on a channel that does not say which language they speak (WhatsApp, Slack), who greets
    in one ("Hola"): that language is theirs, as if they had chosen it with /language (so the course they pick does
    not change it)."""
    if turn.message.meta.get(LANGUAGE) is not None or is_set_up(learner) or learner.language_chosen:
        return
    language = supported(language_greeted_in(turn.text))
    if language is not None:
        turn.user.locale = language
        learner.language_chosen = True


async def show_help(turn: Turn, _args: str) -> None:
    from dialogs import COMMANDS  # the full list, including commands of dialogs added later

    turn.say(_help_text(tr(turn), COMMANDS, admin=bool(await roles.grants(turn))))
    # In the middle of something (setting up, a quiz, /settings): its question is asked again, so its choices are the
    # newest and "1" still answers it. In a group, only a flow of the one who asked (another's stays theirs).
    await flow.resume(turn)


# /help's text, made once for each language, list of commands and kind of reader: a line for each listed command,
# each translated, cost more than the rest of a /help turn's dialog
_HELP_TEXTS: dict[tuple[Translator, bool], tuple[tuple[Command, ...], str]] = {}


def _help_text(_: Translator, commands: tuple[Command, ...], *, admin: bool) -> str:
    kept = _HELP_TEXTS.get((_, admin))
    if kept is not None and kept[0] is commands:
        return kept[1]
    lines = [_("Here is what you can send me:")]
    lines += [f"/{command.name} — {_(command.summary)}" for command in commands if command.listed]
    lines.append(_("You can also type plain words instead, like “next”, “review”, “progress” or “pause”."))
    if admin:
        lines.append(_("/admin help — commands for admins"))
    text = "\n".join(lines)
    _HELP_TEXTS[(_, admin)] = (commands, text)
    return text


async def not_understood(turn: Turn) -> None:
    """Anything no command or dialog step expects, when there is no question answerer to ask."""
    _ = tr(turn)
    turn.say(_("I'm not sure what to do with that yet. Send /help to see what I can do."),
             choices=[(_("Show commands"), "/help")])


def nothing_to_read(turn: Turn) -> None:
    """A message with no words that no question waits for: a photo, a sticker, a voice note, a location, a contact."""
    _ = tr(turn)
    turn.say(_("I can only read words here: please type your question."))


async def unknown_command(turn: Turn, name: str) -> None:
    _ = tr(turn)
    turn.say(_("I don't know the command /{name}. Send /help to see what I can do.", name=name))


async def expired_choice(turn: Turn) -> None:
    """A button from a message whose question is over (or from another version of the bot)."""
    _ = tr(turn)
    turn.say(_("That button is from an earlier message and no longer does anything. Send /help to see what "
               "I can do."))


COMMANDS = (
    Command("start", start, N_("say hello and set up your lessons"), synonyms=("hi", "hello", "hola", "ola", "oi")),
    Command("help", show_help, N_("list what I can do"), synonyms=("help", "commands", "ayuda", "comandos", "ajuda")),
)
