"""What a learner gets back for a question: the answer's text, the lessons it came from, and how it went.

Channel-agnostic and plain text (no Markdown): each channel escapes and renders it like any other `Text`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

NOT_COVERED = (
    "I couldn't find that in your course material, so I'd rather not guess. "
    "Try asking it another way, or with the words the lesson uses."
)
NO_COURSES = "Once you're enrolled in a course, I can answer questions about its lessons."
TOO_FAST = "You're asking faster than I can look things up. Give me a minute and ask again."
BUDGET_SPENT = (
    "That's all the questions I can answer for you today. Ask me again tomorrow, "
    "and in the meantime the lessons themselves are one /help away."
)
EMPTY_QUESTION = "What would you like to know? Ask me anything about your course."
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
class Answer:
    text: str
    sources: tuple[Source, ...] = ()
    declined: bool = False  # the material does not cover the question (or there is none)
    tokens: int = 0  # model tokens spent on this answer (0: extractive or from the cache)
    limited: bool = False  # the learner's rate limit or daily budget was reached
    cached: bool = False
    passages: tuple[str, ...] = field(default=(), compare=False)  # chunk ids the answer drew on

    def to_payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sources": [list(source) for source in self.sources],
            "declined": self.declined,
            "passages": list(self.passages),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], **changes: Any) -> Answer:
        return cls(
            text=payload["text"],
            sources=tuple(Source(*source) for source in payload.get("sources", [])),
            declined=bool(payload.get("declined")),
            passages=tuple(payload.get("passages", [])),
            **changes,
        )
