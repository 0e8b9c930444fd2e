"""Asking a quiz question and checking the answer, for the after-lesson quiz and spaced review alike.

Choices go out as buttons whose values name the question and the answer ("quiz:12:1", "review:12:true"), so a press
arriving long after still says what it answers. Typed answers work too: a choice by letter, number or its words,
true/false in English, Spanish or Portuguese, and free text compared after normalising case, accents, spacing,
punctuation and number words ("Twenty one" = "21").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dialogs.base import Exchange
from dialogs.flow import Invalid, NotAnAnswer, looks_like_question
from dialogs.i18n import Translator, fold
from dialogs.learner import tr
from storage.courses import CHOICE, SHORT_TEXT, TRUE_FALSE, Question

LETTERS = "abcdef"
_TRUE = {"true", "t", "v", "yes", "y", "verdadero", "verdad", "cierto", "si", "verdadeiro", "sim", "correct"}
_FALSE = {"false", "f", "no", "n", "falso", "nao", "incorrect", "wrong"}

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "cero": 0, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
    "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14, "quince": 15,
    "dieciseis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20, "treinta": 30,
    "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80, "noventa": 90,
    "um": 1, "uma": 1, "dois": 2, "duas": 2, "quatro": 4, "sete": 7, "oito": 8, "nove": 9, "dez": 10,
    "vinte": 20, "trinta": 30,
}
_SCALES = {"hundred": 100, "cien": 100, "ciento": 100, "cem": 100, "thousand": 1000, "mil": 1000}
_JOINERS = {"and", "y", "e"}


def normalise(text: str) -> str:
    """Free text made comparable: "  The  Twenty-One Club! " → "the 21 club"."""
    words = re.sub(r"[^\w\s]", " ", fold(text).replace("-", " ")).split()
    out: list[str] = []
    number: int | None = None
    current = 0
    for word in words:
        value = _NUMBER_WORDS.get(word)
        if value is not None or (word in _SCALES and number is not None):
            if value is not None:
                current += value
            else:
                current = max(current, 1) * _SCALES[word]
            number = current
            continue
        if word in _JOINERS and number is not None:
            continue
        if number is not None:
            out.append(str(number))
            number, current = None, 0
        out.append(word)
    if number is not None:
        out.append(str(number))
    return " ".join(out)


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
        if pressed:  # a button carries the choice's index
            picked = int(given) if given.isdigit() and int(given) < len(question.choices or []) else None
        else:
            picked = _typed_choice(question, given)
        return None if picked is None else Verdict(picked == question.correct_choice, right_answer(_, question))
    if question.kind == TRUE_FALSE:
        value = fold(given).strip(" .!")
        said = True if value in _TRUE else False if value in _FALSE else None
        return None if said is None else Verdict(said == question.is_true, right_answer(_, question))
    answer = normalise(given)
    if not answer:
        return None
    accepted = {normalise(a) for a in question.accepted_answers or []}
    return Verdict(answer in accepted, right_answer(_, question))


def grade(_: Translator, question: Question, text: str, prefix: str) -> Verdict:
    """Grade what the learner sent for `question`, or raise: `Invalid` with help when it answers nothing,
    `NotAnAnswer` when it is a question of theirs, and a button of another question is `Invalid` too."""
    pressed = question_id_of(text, prefix)
    if pressed is not None and pressed != question.id:
        raise Invalid(_("That button belongs to an earlier question. Here is the current one:"))
    if pressed is None and question.kind == SHORT_TEXT and looks_like_question(text):
        raise NotAnAnswer()
    verdict = check(_, question, text, prefix)
    if verdict is None:
        if question.kind == TRUE_FALSE:
            raise Invalid(_("Please answer true or false."))
        if question.kind == CHOICE:
            raise Invalid(_("Please pick one of the answers: press a button, or type its letter or number."))
        raise Invalid(_("Please type your answer."))
    return verdict


def _typed_choice(question: Question, given: str) -> int | None:
    """A choice typed by letter ("b"), number ("2", "two") or its own words; None if it names none."""
    choices = question.choices or []
    typed = fold(given).strip(" .!)")
    if len(typed) == 1 and typed in LETTERS[: len(choices)]:
        return LETTERS.index(typed)
    for index, choice in enumerate(choices):
        if normalise(choice) == normalise(given):
            return index
    number = normalise(typed)
    if number.isdigit() and 1 <= int(number) <= len(choices):
        return int(number) - 1
    return None


def ask(x: Exchange, question: Question, *, prefix: str, heading: str) -> None:
    """Say the question with its choices as buttons whose values are "<prefix>:<question id>:<answer>"."""
    _ = tr(x)
    text = f"{heading}\n{question.prompt}" if heading else question.prompt
    if question.kind == CHOICE:
        choices = [(choice[:120], f"{prefix}:{question.id}:{index}") for index, choice in enumerate(question.choices or [])]
        x.say(text, choices=choices)
    elif question.kind == TRUE_FALSE:
        x.say(text, choices=[(_("True"), f"{prefix}:{question.id}:true"), (_("False"), f"{prefix}:{question.id}:false")])
    else:
        x.say(text + "\n\n" + _("(Type your answer.)"))


def feedback(_: Translator, question: Question, verdict: Verdict) -> str:
    """Right or not, the explanation: the moment the answer is freshest is the moment to explain it."""
    if verdict.correct:
        head = _("✅ Right!")
    else:
        head = _("❌ Not quite. The answer is: {answer}", answer=verdict.answer)
    return f"{head}\n{question.explanation}".strip()


def question_id_of(value: str, prefix: str) -> int | None:
    """The question a button value "<prefix>:<id>:<answer>" answers."""
    parts = value.split(":")
    if len(parts) >= 3 and parts[0] == prefix and parts[1].isdigit():
        return int(parts[1])
    return None


__all__ = ["CHOICE", "SHORT_TEXT", "TRUE_FALSE", "Verdict", "ask", "check", "feedback", "normalise"]
