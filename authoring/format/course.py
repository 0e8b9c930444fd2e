"""What a course is, once read: the course, its modules, lessons, quiz questions and price.

Plain frozen data, checked on the way in (authoring.format.reader); the importer writes it to the database, and
the dialogs read courses from there, never from here. The question kinds and access values are the ones the
database stores (storage.courses).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from storage.courses import (  # the values the database stores, and the currencies' minor units
    CHOICE,
    FREE,
    PAID,
    SHORT_TEXT,
    TRUE_FALSE,
    currency_decimals,
    major_units,
)


@dataclass(frozen=True, slots=True)
class Price:
    amount: Decimal
    currency: str
    period: str | None = None  # None: paid once; "month": charged every month (a subscription)

    @property
    def minor_units(self) -> int:
        """The amount in the currency's smallest unit (cents), as payment platforms take it."""
        return int(self.amount.scaleb(currency_decimals(self.currency)))


@dataclass(frozen=True, slots=True)
class Question:
    """A quiz question. kind `choice`: `choices` and `correct_choice` (index); `true_false`: `is_true`;
    `text`: `accepted_answers`."""

    id: str
    kind: str
    prompt: str
    explanation: str
    choices: tuple[str, ...] = ()
    correct_choice: int | None = None
    is_true: bool | None = None
    accepted_answers: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class Lesson:
    """A lesson: `parts` are the bite-size messages it is sent as; `file` is relative to the course folder."""

    id: str
    title: str
    parts: tuple[str, ...]
    questions: tuple[Question, ...]
    file: str
    minutes: int | None = None


@dataclass(frozen=True, slots=True)
class Module:
    id: str
    title: str
    lessons: tuple[Lesson, ...]


@dataclass(frozen=True, slots=True)
class Course:
    id: str
    title: str
    description: str
    language: str
    access: str
    modules: tuple[Module, ...]
    folder: Path
    price: Price | None = None
    free_preview_lessons: int = 0
    pass_mark: int | None = None  # percent of quiz questions right at the first try a certificate needs

    @property
    def lessons(self) -> tuple[Lesson, ...]:
        """Every lesson in the order learners take them."""
        return tuple(lesson for module in self.modules for lesson in module.lessons)

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(question for lesson in self.lessons for question in lesson.questions)


def format_price(minor_units: int, currency: str) -> str:
    """A price kept in minor units, as people read it: 300 GBP -> '3.00 GBP'."""
    return f"{major_units(minor_units, currency)} {currency}"


__all__ = [
    "CHOICE", "Course", "FREE", "Lesson", "Module", "PAID", "Price", "Question", "SHORT_TEXT", "TRUE_FALSE",
    "currency_decimals", "format_price",
]
