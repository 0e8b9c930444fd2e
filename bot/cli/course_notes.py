"""Notes on a valid course: where a lesson will read badly on a chat platform. They never block an import.

`lessonbot course validate` prints them after the check, and `lessonbot course import` before it imports, each as
`file:line: note: …` (docs/courses.md, "What validate reports"):

- a lesson part that, as a platform receives it, is longer than one of its messages: the platform splits it;
- a multiple-choice question whose choices WhatsApp cannot show as quick-reply buttons: they come as numbered lines;
- a lesson whose `minutes` is far from the time its words take to read.

What a platform receives is worked out with its own pure functions, never with a copy of its limits: a part is made
by dialogs.lessons.part_message (the lesson's heading on the first part, the "(2/3)" counter, the "Next ▸" and
"Later" choices), then rendered and split by channels.whatsapp.render, channels.telegram.channel and
channels.slack.blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from authoring.format import CHOICE, Course, Lesson, Problem, Question
from bot.messages import Choice, Text
from bot.text import counted
from channels.text import utf16_units
from channels.whatsapp.render import (
    MAX_BODY_CHARS,
    QUICK_REPLY_TITLE_CHARS,
    quick_reply_variables,
    text_bodies,
    whatsapp_text,
)

WORDS_A_MINUTE = 200  # a reader's pace, for a lesson's reading time
SECONDS_AN_ANSWER = 20  # and a quiz question's answer
MINUTES_SLACK = 2  # `minutes` may be off by this much whatever the lesson's length …
SHARE_SLACK = 0.5  # … and by this share of its reading time
# Languages written without spaces between words: counting words there says nothing of the reading time.
_UNSPACED = ("ja", "km", "lo", "my", "th", "zh")
_WORD = re.compile(r"\w+(?:['’.-]\w+)*")
_MINUTES_LINE = re.compile(r"^minutes\s*:")


@dataclass(frozen=True, slots=True)
class Note(Problem):
    """Something that does not stop a course from being imported, but that learners would notice: a problem's
    place and message, said as a note."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: note: {self.message}"


def course_notes(course: Course) -> list[Note]:
    """Every note on `course` (already checked: `authoring.format.check_course` found no problem), in file and line
    order."""
    notes: list[Note] = []
    numbered: list[Note] = []
    for number, lesson in enumerate(course.lessons, start=1):
        path = course.folder / lesson.file
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # as the check read it
        notes += _long_parts(lesson, number, len(course.lessons), str(path), lines)
        numbered += [note for question in lesson.questions if (note := _numbered_choices(str(path), question))]
        if (note := _minutes(course.language, lesson, str(path), lines)) is not None:
            notes.append(note)
    if numbered:  # a fallback that works, said once for the course rather than once a question
        first, *more = numbered
        places = ", ".join(_at(note) for note in more)
        also = f" (as {counted(len(more), 'other question')} will: {places})" if more else ""
        notes.append(Note(first.file, first.line, first.message + also))
    return sorted(notes, key=lambda note: (note.file, note.line))


def _at(note: Note) -> str:
    return f"{Path(note.file).name}:{note.line}"


# Parts longer than a message -----------------------------------------------------------------------------------------


def part_reply(lesson: Lesson, index: int, number: int, count: int) -> Text:
    """Part `index` of the lesson, the `number`th of `count` in its course, as dialogs.lessons sends it to a learner
    who has not answered its quiz yet, in English (a translation's heading differs by a few characters)."""
    from dialogs.i18n import translator
    from dialogs.lessons import part_message

    text, choices = part_message(translator("en"), lesson.title, lesson.minutes, lesson.parts, index, number,
                                 count, quiz_to_take=bool(lesson.questions))
    return Text(text, tuple(Choice(label, value) for label, value in choices))


def _long_parts(lesson: Lesson, number: int, count: int, file: str, lines: list[str]) -> list[Note]:
    """A note for each part WhatsApp sends as more than one message."""
    notes: list[Note] = []
    starts = part_lines(lines, lesson.parts)
    for index in range(len(lesson.parts)):
        reply = part_reply(lesson, index, number, count)
        bodies = text_bodies(reply)
        if len(bodies) == 1:
            continue
        size = utf16_units(whatsapp_text(reply))
        where = f"part {index + 1} of {len(lesson.parts)}" if len(lesson.parts) > 1 else "the lesson's only part"
        notes.append(Note(file, starts[index], (
            f"{where} is {size:,} characters as WhatsApp receives it (with the lesson's heading, its counter and its "
            f"choices), more than the {MAX_BODY_CHARS:,} of a WhatsApp message: learners there get it as "
            f"{len(bodies)} messages{_on_other_platforms(reply)}. Split it with a line '---' where it reads well "
            "(in a code block '---' is code: end the block, write '---', and start another)")))
    return notes


def _on_other_platforms(reply: Text) -> str:
    """What Telegram and Slack make of a part WhatsApp splits, where they split it too.

    WhatsApp's message is the smallest of the three (tests/authoring/test_course_notes.py holds it so), so a part
    WhatsApp sends whole the others send whole: only for a part it splits are their modules, and the SDKs they bring,
    imported, which keeps `validate` quick."""
    from channels.slack.blocks import SECTION_TEXT_LIMIT, render_text
    from channels.telegram.channel import MAX_TEXT_CHARS, fit

    said = ""
    telegram = len(fit(reply.text, MAX_TEXT_CHARS))
    if telegram > 1:
        said += f"; on Telegram, as {telegram} messages of at most {MAX_TEXT_CHARS:,} characters"
    messages = render_text(reply)
    sections = sum(1 for message in messages for block in message.blocks if block["type"] == "section")
    if sections > 1:
        said += (f"; on Slack, as {counted(len(messages), 'message')} in {sections} sections of at most "
                 f"{SECTION_TEXT_LIMIT:,} characters")
    return said


def part_lines(lines: list[str], parts: tuple[str, ...]) -> list[int]:
    """The line of the lesson file (`lines`) where each part starts.

    A part is the file's text with only its spaces and line breaks changed (soft-wrapped lines joined, a hard break's
    backslash dropped), so the file's lines are matched, in order, against the parts' text without its whitespace; a
    line that is not next in that text (the front matter, a '---' between parts) is skipped.
    """
    squashed = [_squash(part) for part in parts]
    starts, offset = [], 0
    for part in squashed:
        starts.append(offset)
        offset += len(part)
    text = "".join(squashed)
    found: list[int] = []
    offset = 0
    for number, line in enumerate(lines[_body_start(lines):], start=_body_start(lines) + 1):
        for piece in (_squash(line), _squash(line.rstrip().removesuffix("\\"))):
            if piece and text.startswith(piece, offset):
                while len(found) < len(parts) and starts[len(found)] < offset + len(piece):
                    found.append(number)
                offset += len(piece)
                break
        if len(found) == len(parts):
            break
    return found + [found[-1] if found else 1] * (len(parts) - len(found))


def _body_start(lines: list[str]) -> int:
    """The index of the first line after the front matter (the second '---' line)."""
    closing = next((index for index, line in enumerate(lines[1:], start=1) if line.strip() == "---"), 0)
    return closing + 1


def _squash(text: str) -> str:
    return "".join(text.split())


# Choices that cannot be buttons on WhatsApp --------------------------------------------------------------------------


def _numbered_choices(file: str, question: Question) -> Note | None:
    """A note for a multiple-choice question WhatsApp shows as numbered lines rather than quick-reply buttons."""
    if question.kind != CHOICE:
        return None
    reply = Text(question.prompt, tuple(Choice(choice, str(index)) for index, choice in enumerate(question.choices)))
    if quick_reply_variables(reply) is not None:
        return None
    most = _most_quick_replies()
    count, long = len(question.choices), sum(1 for choice in question.choices if len(choice) > QUICK_REPLY_TITLE_CHARS)
    over = f"over {QUICK_REPLY_TITLE_CHARS} characters"
    if count > most:
        has = f"{count} choices" + (f", {long} of them {over}" if long else "")
    elif long:
        has = f"{count} choices {over}" if long == count else f"{counted(long, 'choice')} {over}"
    else:  # its text, then: not while the check keeps questions under PROMPT_CHARS (authoring.format.quiz)
        has = "a text longer than a message with buttons takes"
    first = question.choices[0]
    return Note(file, question.line, (
        f"question {question.id} has {has}: WhatsApp's quick-reply buttons take at most {most} choices of at most "
        f"{QUICK_REPLY_TITLE_CHARS} characters, so learners there see these as numbered lines under the question "
        f"('1. {first}') and answer with the number or the words"))


@cache
def _most_quick_replies() -> int:
    """How many choices WhatsApp shows as quick-reply buttons, asked of channels.whatsapp.render rather than copied."""
    def fits(n: int) -> bool:
        return quick_reply_variables(Text("?", tuple(Choice("a", str(i)) for i in range(n)))) is not None
    return max((n for n in range(1, 26) if fits(n)), default=0)


# minutes ------------------------------------------------------------------------------------------------------------


def reading_words(lesson: Lesson) -> int:
    """The words a learner reads in a lesson: its parts, and its quiz's questions, choices and explanations."""
    texts = [*lesson.parts]
    for question in lesson.questions:
        texts += [question.prompt, *question.choices, question.explanation]
    return sum(len(_WORD.findall(text)) for text in texts)


def _minutes(language: str, lesson: Lesson, file: str, lines: list[str]) -> Note | None:
    """A note when `minutes` is off the reading time by more than half of it and more than MINUTES_SLACK."""
    if lesson.minutes is None or language.split("-")[0] in _UNSPACED:
        return None
    words = reading_words(lesson)
    reading = words / WORDS_A_MINUTE + len(lesson.questions) * SECONDS_AN_ANSWER / 60
    off = abs(lesson.minutes - reading)
    if off <= MINUTES_SLACK or off <= reading * SHARE_SLACK:
        return None
    line = next((number for number, text in enumerate(lines[1:_body_start(lines)], start=2)
                 if _MINUTES_LINE.match(text)), 1)
    about = max(1, round(reading))
    return Note(file, line, (
        f"minutes: {lesson.minutes}, but the lesson's {words:,} words (text and quiz) and "
        f"{counted(len(lesson.questions), 'answer')} take about {counted(about, 'minute')} (reading {WORDS_A_MINUTE} "
        f"words a minute, answering in {SECONDS_AN_ANSWER} seconds), and learners see 'about {lesson.minutes} min' "
        f"in its heading: set it nearer {about}, or leave it out"))


__all__ = ["Note", "course_notes", "part_lines", "part_reply", "reading_words"]
