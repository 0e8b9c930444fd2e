"""What a learner gets back for a question: the answer's text, the lessons it came from, and how it went.

Channel-agnostic and plain text (no Markdown): each channel escapes and renders it like any other `Text`. When the
material gives no answer, the answer says why (`NoAnswer`) and carries no text: the dialogs own those words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class NoAnswer(StrEnum):
    """Why a question got no answer from the material. Knowledge names the reason; what the learner is told for
    each is the dialogs' to say, in the learner's language (dialogs/ask.py)."""

    EMPTY_QUESTION = "empty_question"
    NO_COURSES = "no_courses"  # the learner may read no course yet
    NOT_COVERED = "not_covered"  # the material does not cover the question
    # a paid course's free preview does not answer it, the course's other lessons do (never quoted to the learner)
    BEYOND_PREVIEW = "beyond_preview"
    TOO_FAST = "too_fast"  # the learner's per-minute allowance is spent
    # none of the courses the learner may read is in the knowledge store (imported, but its indexing failed, or the
    # store was lost or made anew): nothing was looked for, and nothing is said to be missing from the course
    NOT_INDEXED = "not_indexed"

    @property
    def limited(self) -> bool:
        """The learner's allowance, not the material, stood in the way."""
        return self is NoAnswer.TOO_FAST


# The labels answers carry; dialogs translate them for the learner.
FROM_YOUR_COURSE = "From your course:"
FROM = "From:"


class Source(NamedTuple):
    course_id: str
    lesson_id: str
    title: str


def sources_of(passages: Iterable[Any]) -> tuple[Source, ...]:
    """The lessons the passages (knowledge.retrieval.Passage) come from, each once, in the passages' order."""
    return tuple(dict.fromkeys(Source(p.course_id, p.lesson_id, p.lesson_title) for p in passages))


@dataclass(frozen=True)
class Quoted:
    """Sentences an extractive answer quotes from one passage, and where they are (its lesson › section): the
    sentences are course text, the place an author's title, shown as written."""

    sentences: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class CourseAnswer:
    """An answer from the course material (`text` with its `sources`), or none and why (`unanswered`, `text` empty).
    An extractive answer carries its quotes apart too (`quotes`): only those are the course's own words; anything else
    in `text` is a model's, which a question can steer."""

    text: str
    sources: tuple[Source, ...] = ()
    unanswered: NoAnswer | None = None
    tokens: int = 0  # model tokens spent on this answer (0: extractive or from the cache)
    cached: bool = False
    passages: tuple[str, ...] = field(default=(), compare=False)  # chunk ids the answer drew on
    # how sure the answerability model was that the quote answers the question (extractive answers; 0..1)
    confidence: float | None = field(default=None, compare=False)
    # a question the course does not answer: the lessons that came nearest, for the learner to look at instead
    covers: tuple[Source, ...] = ()
    quotes: tuple[Quoted, ...] = field(default=(), compare=False)  # an extractive answer's, as in `text`
    # a question answered past a free preview (`NoAnswer.BEYOND_PREVIEW`): the locked lessons that answer it, for the
    # course's authors; never shown to the learner
    locked: tuple[Source, ...] = ()

    @classmethod
    def none(
        cls,
        reason: NoAnswer,
        *,
        tokens: int = 0,
        confidence: float | None = None,
        covers: tuple[Source, ...] = (),
        locked: tuple[Source, ...] = (),
    ) -> CourseAnswer:
        return cls(text="", unanswered=reason, tokens=tokens, confidence=confidence, covers=covers, locked=locked)

    @property
    def declined(self) -> bool:
        """No answer from the material: it does not cover the question, or not what the learner may read (none yet,
        or a free preview), or there was no question."""
        return self.unanswered is not None and not self.unanswered.limited

    @property
    def limited(self) -> bool:
        """The learner's rate limit or daily budget was reached."""
        return self.unanswered is not None and self.unanswered.limited

    def to_payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sources": [list(source) for source in self.sources],
            "unanswered": self.unanswered.value if self.unanswered else None,
            "passages": list(self.passages),
            "covers": [list(source) for source in self.covers],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], **changes: Any) -> CourseAnswer:
        return cls(
            text=payload["text"],
            sources=tuple(Source(*source) for source in payload.get("sources", [])),
            unanswered=NoAnswer(payload["unanswered"]) if payload.get("unanswered") else None,
            passages=tuple(payload.get("passages", [])),
            covers=tuple(Source(*source) for source in payload.get("covers", [])),
            **changes,
        )
