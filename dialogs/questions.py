"""Asking a quiz question and checking the answer, for the after-lesson quiz and spaced review alike.

Choices go out as buttons whose values name the question and the answer ("quiz:12:1:5d41ab", "review:12:true"), so a
press arriving long after still says what it answers: a choice's button carries its index and a fingerprint of its
words, so a press from before a re-import that reordered the choices is graded on the choice it showed, and one whose
choice is gone is asked again, as is one pressed after a re-import made the question one to type (a button from
before fingerprints, index alone, is read by its index). Typed answers work too: a choice by letter, number or its
words, true/false in English, Spanish or Portuguese, and free text compared by `bot.text.answer_key` (case, accents,
spacing, punctuation and number words: "Twenty one" = "21"), the same key the course check de-duplicates by.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.messages import ANSWER_COMMAND, ANSWER_FORM, ANSWER_FORM_OFFERED
from bot.text import answer_key, fold
from dialogs import choices, flow
from dialogs.flow import Invalid, NotAnAnswer, looks_like_question
from dialogs.i18n import Translator
from dialogs.learner import tr
from dialogs.turn import Exchange, Turn
from storage.courses import CHOICE, SHORT_TEXT, TRUE_FALSE, Question, question_by_id

LETTERS = "abcdef"
_TRUE = {"true", "t", "v", "yes", "y", "verdadero", "verdad", "cierto", "si", "verdadeiro", "sim", "correct"}
_FALSE = {"false", "f", "no", "n", "falso", "nao", "incorrect", "wrong"}


@dataclass(frozen=True, slots=True)
class Verdict:
    correct: bool
    answer: str  # the right answer as shown to the learner


def right_answer(_: Translator, question: Question) -> str:
    if question.kind == CHOICE:
        return (question.choices or [""])[question.correct_choice or 0]
    if question.kind == TRUE_FALSE:
        return _("True") if question.is_true else _("False")
    return (question.accepted_answers or [""])[0]


def check(_: Translator, question: Question, typed: str, prefix: str) -> Verdict | None:
    """Grade an answer (a button value or typed text); None when it is not an answer to this question at all."""
    given = typed.strip()
    marker = f"{prefix}:{question.id}:"
    pressed = given.startswith(marker)
    if pressed:
        given = given[len(marker):]
    if question.kind == CHOICE:
        picked = pressed_choice(question, given) if pressed else _typed_choice(question, given)
        return None if picked is None else Verdict(picked == question.correct_choice, right_answer(_, question))
    if question.kind == TRUE_FALSE:
        value = fold(given).strip(" .!")
        said = True if value in _TRUE else False if value in _FALSE else None
        return None if said is None else Verdict(said == question.is_true, right_answer(_, question))
    answer = answer_key(given)
    if pressed or not answer:  # a button answers a question of choices, or true or false: this one is typed
        return None
    accepted = {answer_key(a) for a in question.accepted_answers or []}
    return Verdict(answer in accepted, right_answer(_, question))


def grade(_: Translator, question: Question, text: str, prefix: str, *, numbered: bool = False) -> Verdict:
    """Grade what the learner sent for `question`, or raise: `Invalid` with help when it answers nothing,
    `NotAnAnswer` when it is a question of theirs, and a button of another question is `Invalid` too. `numbered`:
    the choices were shown as numbered lines (no buttons: WhatsApp, the terminal)."""
    pressed = question_id_of(text, prefix)
    if pressed is not None and pressed != question.id:
        raise Invalid(_("That button belongs to an earlier question. Here is the current one:"))
    if pressed is None and question.kind == SHORT_TEXT and looks_like_question(text):
        raise NotAnAnswer()
    verdict = check(_, question, text, prefix)
    if verdict is None and pressed is not None:  # a button sent before a re-import changed the question
        raise Invalid(_("That question has changed since it was sent. Here it is as it is now:"))
    if verdict is None:
        if question.kind == TRUE_FALSE:
            raise Invalid(_("Please answer true or false."))
        if question.kind == CHOICE and numbered:
            raise Invalid(_("Please pick one of the answers: type its number or letter."))
        if question.kind == CHOICE:
            raise Invalid(_("Please pick one of the answers: press a button, or type its letter or number."))
        raise Invalid(_("Please type your answer."))
    return verdict


def choice_value(prefix: str, question: Question, index: int) -> str:
    """The value of the button for `question`'s choice at `index`: its index and the fingerprint of its words."""
    return f"{prefix}:{question.id}:{index}:{_fingerprint((question.choices or [])[index])}"


def _fingerprint(choice: str) -> str:
    """Of the choice's words as written ("C" and "C#", "x > y" and "x < y" are other choices)."""
    return hashlib.sha256(choice.strip().encode()).hexdigest()[:6]


def _first_fingerprint(choice: str) -> str:
    """The fingerprint the first buttons carried (of the choice's answer key): still read at the button's index."""
    return hashlib.sha256(answer_key(choice).encode()).hexdigest()[:6]


def pressed_choice(question: Question, given: str) -> int | None:
    """The choice a pressed button ("1:5d41ab", after the question's id) picks among the question's choices now:
    the one at its index if its words are still there, else the one with its words (wherever a re-import put it),
    else none; a button without a fingerprint, its index."""
    choices = question.choices or []
    index, _, fingerprint = given.partition(":")
    if not index.isdigit():
        return None
    at = int(index)
    if not fingerprint or (at < len(choices) and fingerprint in (_fingerprint(choices[at]), _first_fingerprint(
            choices[at]))):
        return at if at < len(choices) else None
    return next((other for other, choice in enumerate(choices) if _fingerprint(choice) == fingerprint), None)


def _typed_choice(question: Question, given: str) -> int | None:
    """A choice typed by letter ("b"), number ("2", "two") or its own words; None if it names none."""
    choices = question.choices or []
    typed = fold(given).strip(" .!)")
    if len(typed) == 1 and typed in LETTERS[: len(choices)]:
        return LETTERS.index(typed)
    for index, choice in enumerate(choices):
        if answer_key(choice) == answer_key(given):
            return index
    number = answer_key(typed)
    if number.isdigit() and 1 <= int(number) <= len(choices):
        return int(number) - 1
    return None


def answers_in_words(question: Question, typed: str) -> bool:
    """Whether `typed` is, word for word, one of the question's own answers: an accepted answer of a typed question,
    the words of one of its choices, or true or false (not a letter or a number, which no command is)."""
    key = answer_key(typed)
    if not key:
        return False
    if question.kind == CHOICE:
        return any(answer_key(choice) == key for choice in question.choices or [])
    if question.kind == TRUE_FALSE:
        return fold(typed).strip(" .!") in _TRUE | _FALSE
    return key in {answer_key(answer) for answer in question.accepted_answers or []}


async def is_own_answer(turn: Turn, data: dict[str, Any], text: str) -> bool:
    """Whether `text` is one of the own answers (`answers_in_words`) of the question a quiz's or a review's `data`
    asks now: its step's `own_words`, so "pause" typed as a quiz's answer is graded, not taken for /pause."""
    question, _queue = await still_asked(turn, list(data.get("queue") or []))
    return question is not None and answers_in_words(question, text)


def ask(x: Exchange, question: Question, *, prefix: str, heading: str) -> None:
    """Say the question with its choices as buttons whose values are "<prefix>:<question id>:<answer>"."""
    _ = tr(x)
    text = f"{heading}\n{question.prompt}" if heading else question.prompt
    if question.kind == CHOICE:
        choices = [(choice[:120], choice_value(prefix, question, index))
                   for index, choice in enumerate(question.choices or [])]
        x.say(text, choices=choices)
    elif question.kind == TRUE_FALSE:
        x.say(
            text, choices=[(_("True"), f"{prefix}:{question.id}:true"), (_("False"), f"{prefix}:{question.id}:false")]
        )
    elif isinstance(x, Turn) and x.message.meta.get(ANSWER_FORM_OFFERED) is True:
        # Typing is not heard here: a button opens the platform's form to type the answer into.
        x.say(text + "\n\n" + typing_hint(x), choices=[(_("✍️ Type an answer"), f"{ANSWER_FORM}{prefix}:{question.id}")])
    else:
        x.say(text + "\n\n" + typing_hint(x))


async def answer_from_form(turn: Turn, question: str, fallback: Callable[[Turn], Awaitable[None]]) -> None:
    """Words typed into a form opened for `question` (a Slack modal, `meta[ANSWERS]`: "quiz:12"): its answer while
    it is the question waiting for this person, even with another flow of theirs started on top of it since (its
    "Type an answer" button offered to them: `choices.was_offered`), which is asked again after; else, submitted late
    (they answered it otherwise, and the quiz moved on or ended), refused, and the question waiting asked again.
    Never a command, never another question's answer."""
    if flow.asks(turn, question) or (await choices.was_offered(turn, ANSWER_FORM + question)
                                     and flow.bring_up(turn, question)):
        await flow.handle(turn, fallback)
        return
    _ = tr(turn)
    turn.say(_("That answer was for a question I am no longer asking, so it does not count."))
    await flow.resume(turn)


def typing_hint(x: Exchange) -> str:
    """How to answer in words: typed, or through the command a platform gives where typing is not heard (a Slack
    member's private place in a channel: `meta[ANSWER_COMMAND]`)."""
    _ = tr(x)
    command = x.message.meta.get(ANSWER_COMMAND) if isinstance(x, Turn) else None
    if isinstance(command, str) and command:
        return _("(Answer with {command} followed by your answer.)", command=command)
    return _("(Type your answer.)")


def feedback(_: Translator, question: Question, verdict: Verdict, *, reveal: bool = True) -> str:
    """Right or not, the explanation: the moment the answer is freshest is the moment to explain it. Without
    `reveal` (a wrong retake), neither the answer nor the explanation: the lesson holds them."""
    if not reveal:
        return _("❌ Not quite. Its lesson has the answer: read it again before the question comes back.")
    head = _("✅ Right!") if verdict.correct else _("❌ Not quite. The answer is: {answer}", answer=verdict.answer)
    return f"{head}\n{question.explanation}".strip()


def question_id_of(value: str, prefix: str) -> int | None:
    """The question a button value "<prefix>:<id>:<answer>" answers."""
    parts = value.split(":")
    if len(parts) >= 3 and parts[0] == prefix and parts[1].isdigit():
        return int(parts[1])
    return None


__all__ = ["CHOICE", "SHORT_TEXT", "TRUE_FALSE", "Verdict", "ask", "check", "choice_value", "feedback"]


async def still_asked(x: Exchange, queue: list[int]) -> tuple[Question | None, list[int]]:
    """The first question of a quiz's or review's `queue` still in the course, and the queue from it (those before
    it, taken out by a re-import since the queue was made, dropped); (None, []) when none is left."""
    while queue:
        question = await question_by_id(x.transaction, queue[0])
        if question is not None and not question.retired:
            return question, queue
        queue = queue[1:]
    return None, []


def taken_out(_: Translator) -> str:
    """What a learner hears who answers a question a re-import took out of the course since it was asked."""
    return _("That question was taken out of the course since I asked it, so it does not count.")
