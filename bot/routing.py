"""Which dialog answers a message: a command, a pressed button, the dialog in progress, or the question answerer.

(A typed choice, a current button's label or its number where choices are numbered, arrives here already read as
the choice it names: bot/pipeline.py asks dialogs/choices.py.)

0. The platform's word that someone joined or left a group chat goes to the chat's team (dialogs/teams.py), and one
   who left has their home there end (dialogs/group_chats.py); its word that the bot may send in a chat again
   (bot/pipeline.py lifts a refusal of the chat on it) gets no answer.
1. A command ("/next", or a synonym typed alone: "next", "siguiente", or with arguments its command reads from
   plain words: "pause 3 days") runs. A dialog in progress stays where it
   was (its buttons still work, its next answer still goes to it; /start asks an unfinished onboarding again). A
   command's plain word typed at its own question answers it where the dialog says so (`Flow.answered_by_its_word`:
   "stop" at /stop's question), as do words the question waiting for the person takes as one of its own answers
   (`Step.own_words`: a quiz's accepted answer "pause"); elsewhere ("review" typed in a review) the command runs.
2. A button pressed again at once (a double tap, dialogs/choices.py) gets nothing: the first press was answered.
   A pressed choice that was never offered to this person here (dialogs/choices.py) is refused, and nothing else
   happens. One that was, whose value has a known prefix ("lesson:next", "quiz:12:1"), goes to its dialog, however
   late.
3. The dialog in progress (dialogs/flow.py) reads the message; a question of the person's goes to the question
   answerer and the step is asked again.
4. Someone not set up yet, in a private chat (whatever they write first: "hello there", "1", their name), gets the
   welcome and the first onboarding question, as /start gives it.
5. A typed option number that names no current choice is told the options; a message with no words (a photo, a
   voice note, a location) is told only words are read, as a question waiting for words tells it; anything else goes
   to the fallback: the question answerer (dialogs/ask.py), or first an organisation's Rasa model (bot/rasa_nlu.py).
A message marked `QUESTION` (a Rasa assistant's ask action) goes straight to the question answerer, and one marked
`ANSWERS` (words typed into a Slack modal opened for one question) to that question while it waits, never elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import dialogs
from bot.messages import ANSWERS, LANGUAGE, MAY_SEND, MEMBERSHIP, MOVED_FROM, QUESTION
from bot.text import fold
from dialogs import ask, choices, flow, greeting, group_chats, onboarding, questions, teams
from dialogs.learner import adopt_language, is_set_up, learner_of
from dialogs.turn import Command, Turn

Responder = Callable[[Turn], Awaitable[None]]

# "/start", "/start@LessonBot payload", "/admin stats"; a name with a hyphen ("/lessonbot something-else" in Slack) is a
# command too, one there is none of, which the unknown command's answer says; a name in any letters ("/próximo") is a
# command's word typed as one
_COMMAND = re.compile(r"^/(?P<name>[^\W][\w-]{0,31})(?:@\S+)?(?:\s+(?P<args>.*))?$", re.DOTALL)
_AROUND_WORDS = " .!¡?¿"


def parse_command(text: str) -> tuple[str, str] | None:
    """Split "/name args" into (name, args); plain text that is only a command's synonym counts too, and so does a
    synonym typed as a command ("/idioma", "/mas tarde", "/comprar basics")."""
    match = _COMMAND.match(text.strip())
    if match:
        name, args = match["name"].lower(), (match["args"] or "").strip()
        if find_command(name) is not None:
            return name, args
        named = _named_by_words(fold(text.strip()[1:]).strip(_AROUND_WORDS))
        if named is not None:
            return named
        word = _named_by_words(fold(name))
        return (word[0], args) if word is not None else (name, args)
    return _named_by_words(fold(text).strip(_AROUND_WORDS))


def _named_by_words(words: str) -> tuple[str, str] | None:
    """The command a synonym names ("siguiente"), or one that reads its arguments from the words after it."""
    for command in dialogs.COMMANDS:
        if words in command.synonyms:
            return command.name, ""
    for command in dialogs.COMMANDS:
        args = _plain_args(command, words)
        if args is not None:
            return command.name, args
    return None


def _plain_args(command: Command, words: str) -> str | None:
    """What follows one of the command's synonyms in `words`, if the command takes it that way ("pause 3 days")."""
    if command.plain_args is None:
        return None
    for synonym in command.synonyms:
        rest = words.removeprefix(synonym + " ").strip()
        if rest != words and command.plain_args.fullmatch(rest):
            return rest
    return None


def _answers_its_own_question(turn: Turn, command: str) -> bool:
    """A command's plain word (not "/name") typed while that command's own question waits for this person."""
    if turn.message.choice is not None or turn.text.lstrip().startswith("/"):
        return False  # (asked first: a "/name" typed, the usual command, needs no look at the flows)
    entry = flow.current(turn)
    return entry is not None and entry["name"] == command and flow.answered_by_its_word(command)


async def _an_answer_in_words(turn: Turn) -> bool:
    """Plain words (not "/name", not a button) that the question waiting for this person reads as one of its own
    answers (`flow.takes_own_words`: "pause" as a quiz's answer, "hola" in a Spanish course): answered, not run as
    the command they also name."""
    return (turn.message.choice is None and not turn.text.lstrip().startswith("/")
            and await flow.takes_own_words(turn, turn.text))


def find_command(name: str) -> Command | None:
    return next((command for command in dialogs.COMMANDS if command.name == name), None)


async def respond(turn: Turn, *, fallback: Responder = ask.answer_question) -> None:
    """Answer one message. `fallback` takes what nothing else expects (the question answerer; bot/rasa_nlu.py puts
    an organisation's Rasa model in front of it)."""
    if membership := turn.message.meta.get(MEMBERSHIP):  # the platform says someone joined or left a group chat
        if membership == "left":
            await group_chats.left(turn)
        await teams.membership_changed(turn)
        return
    if turn.message.meta.get(MOVED_FROM):  # the platform says this chat continues another (a group's new id)
        await group_chats.moved(turn)
        return
    if MAY_SEND in turn.message.meta:  # the platform says the bot may send here again, or not: nothing to say
        return
    if await choices.pressed_again(turn):  # a double tap: the first press had its answer
        return
    learner = await learner_of(turn)
    adopt_language(turn, learner, turn.message.meta.get(LANGUAGE))
    greeting.greeted(turn, learner)  # "Hola" where the platform does not say the person's language
    if turn.message.meta.get(QUESTION):  # asked as a question on purpose (a Rasa assistant's ask action)
        await ask.answer_question(turn)
        return
    if isinstance(answered := turn.message.meta.get(ANSWERS), str):  # typed into a form opened for one question
        await questions.answer_from_form(turn, answered, ask.answer_question)
        return
    parsed = parse_command(turn.text)
    if parsed is not None and (_answers_its_own_question(turn, parsed[0]) or await _an_answer_in_words(turn)):
        parsed = None  # "stop" (or "parar") typed at /stop's own question, "pause" as a quiz's answer: answers it
    if parsed is not None:
        name, args = parsed
        command = find_command(name)
        if command is None:
            await greeting.unknown_command(turn, name)
            return
        await command.handler(turn, args)
        return
    choice = turn.message.choice
    if choice is not None and not await choices.was_offered(turn, choice):
        choices.refuse(turn)
        return
    if choice is not None and ":" in choice:
        handler = dialogs.BUTTONS.get(choice.split(":", 1)[0])
        if handler is not None:
            await handler(turn, choice)
            return
    if await flow.handle(turn, ask.answer_question):
        return
    if choice is not None:
        await greeting.expired_choice(turn)
        await flow.resume(turn)  # the person's question still open is asked again
        return
    if not is_set_up(learner) and turn.message.private:  # a first message is rarely /start (on WhatsApp, never)
        await onboarding.begin(turn)
        return
    if choices.is_option_number(turn.text):
        await choices.not_an_option(turn)
        return
    if not turn.text.strip():  # a photo, a sticker, a voice note, a location or contact card: no words
        greeting.nothing_to_read(turn)
        return
    await fallback(turn)
