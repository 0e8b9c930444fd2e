"""A lesson's quiz: the '## Quiz' section at the end of a lesson file, one '### question-id' block per question.

A question's kind follows from how its answers are written: ticked boxes (multiple choice), 'Answer: true|false'
(true/false), or 'Accepted answers:' (short text, compared by `bot.text.answer_key`, as grading compares them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from authoring.format.course import CHOICE, SHORT_TEXT, TRUE_FALSE, Question
from authoring.format.fields import ID, ID_CHARS, ID_HINT
from authoring.format.parts import LIST_ITEM, fence_state, unwrap
from authoring.format.problems import Report
from bot.text import answer_key, counted

PROMPT_CHARS = 700  # a question and an explanation are each sent as one message
CHOICE_CHARS = 120  # choices become buttons or numbered options: short reads best everywhere
MAX_CHOICES = 6
ANSWER_CHARS = 100

_QUIZ_HEADING = re.compile(r"^##\s+quiz\s*#*\s*$", re.IGNORECASE)
_QUESTION_HEADING = re.compile(r"^###\s+(.*?)\s*#*\s*$")
_OTHER_HEADING = re.compile(r"^#{1,2}\s")
CHECKBOX = re.compile(r"^\s{0,3}[-*+]\s+\[([ xX])\]\s*(.*)$")
_ANSWER = re.compile(r"^answer\s*:\s*(.*)$", re.IGNORECASE)
_ACCEPTED = re.compile(r"^accepted(?:\s+answers?)?\s*:\s*(.*)$", re.IGNORECASE)
_EXPLANATION = re.compile(r"^explanation\s*:\s*(.*)$", re.IGNORECASE)
# A heading (or a line of its own) that looks meant to start the quiz: '# Quiz', '### Quiz', '## Quizz',
# '## Quiz questions', '**Quiz**', 'Quiz:'.
_NEAR_QUIZ_HEADING = re.compile(r"^\s{0,3}(?:(?:#{1,6}|\*{1,2}|_{1,2})[ \t]*quiz.*|quiz\w*[ \t]*:?[ \t]*)$",
                                re.IGNORECASE)
# A thematic break, which Markdown draws as a line: '---', '***', '___' (spaces between allowed).
_BREAK = re.compile(r"^\s{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
QUIZ_HEADING = "## Quiz"

KINDS_HINT = (
    "mark choices '- [x] right' / '- [ ] wrong' (multiple choice), write 'Answer: true' or 'Answer: false' "
    "(true/false), or list 'Accepted answers:' as '- answer' lines (short text)"
)


def split_quiz(body: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The lesson text and the quiz section (from its '## Quiz' heading to the end of the file)."""
    fence = None
    for index, (_number, line) in enumerate(body):
        fence = fence_state(fence, line)
        if fence is None and _QUIZ_HEADING.match(line):
            return body[:index], body[index:]
    return body, []


def quiz_syntax(line: str) -> str | None:
    """What quiz syntax a line is ("a '- [x]' choice", "'Answer:'" …), or None for a line of any other text."""
    if checkbox := CHECKBOX.match(line):
        return f"a '- [{checkbox.group(1)}]' choice"
    stripped = line.strip()
    for pattern, name in ((_ANSWER, "Answer:"), (_ACCEPTED, "Accepted answers:"), (_EXPLANATION, "Explanation:")):
        if pattern.match(stripped):
            return f"'{name}'"
    return None


def check_quiz_outside(file: str, text: list[tuple[int, str]], *, quiz_line: int | None, report: Report) -> None:
    """Quiz syntax in the lesson text (`text` numbered, before the quiz): with the quiz heading mistyped or missing,
    the questions would reach learners as lesson text. Reported once, at the first such line, naming the heading
    that was probably meant."""
    fence = None
    first: tuple[int, str] | None = None
    near: tuple[int, str] | None = None  # the last heading-like line before the first quiz line
    more = 0
    for number, line in text:
        was_open = fence is not None
        fence = fence_state(fence, line)
        if was_open or fence is not None:
            continue
        if first is None and _NEAR_QUIZ_HEADING.match(line):
            near = (number, line.strip())
        if (what := quiz_syntax(line)) is not None:
            if first is None:
                first = (number, what)
            else:
                more += 1
    if first is None:
        return
    number, what = first
    also = f" (and {counted(more, 'more line')} below)" if more else ""
    if quiz_line is not None:
        fix = f"the quiz is the section under '{QUIZ_HEADING}' (line {quiz_line}): move it into a question there"
    elif near is not None:
        fix = (f"the quiz starts at a line that is exactly '{QUIZ_HEADING}', and line {near[0]} reads "
               f"'{near[1]}': write '{QUIZ_HEADING}' there")
    else:
        fix = (f"the quiz starts at a line that is exactly '{QUIZ_HEADING}': write it above the first question, "
               "or reword this line if it is lesson text")
    report(file, number, f"{what} belongs to a quiz question, but this line is in the lesson text{also}, so "
           f"learners would read it as written: {fix}")


def _break_message(line: str, where: str) -> str:
    return (f"a '{line.strip()}' line in the quiz: '---' separates parts of the lesson text only, and here learners "
            f"would see it in {where}: remove it (each '### question-id' heading starts a new question)")


def read_quiz(
    file: str, lines: list[tuple[int, str]], *, report: Report, claim_id: Callable[[str, str, int], None]
) -> tuple[Question, ...] | None:
    """The questions of a quiz section (`lines` numbered, from its heading on), or None after reporting what is
    wrong. `claim_id(question_id, file, line)` keeps question ids unique across the course."""
    if not lines:
        return ()
    blocks: list[tuple[int, str, list[tuple[int, str]]]] = []
    ok = True
    fence = None
    for number, line in lines[1:]:  # lines[0] is the ## Quiz heading
        fence = fence_state(fence, line)
        heading = _QUESTION_HEADING.match(line) if fence is None else None
        if heading:
            blocks.append((number, heading.group(1), []))
        elif fence is None and _BREAK.match(line) and not blocks:
            report(file, number, _break_message(line, "the quiz, before its first question"))
            ok = False
        elif fence is None and _OTHER_HEADING.match(line):
            report(file, number, "the quiz is the last section of a lesson: move this heading and its text "
                   f"above '{QUIZ_HEADING}'")
            ok = False
        elif blocks:
            blocks[-1][2].append((number, line))
        elif line.strip():
            report(file, number, "quiz questions start with a '### question-id' heading: put this text under one")
            ok = False
    if not blocks:
        report(file, lines[0][0], "the quiz has no questions: add '### question-id' headings below '## Quiz', or "
               "remove the heading")
        return None
    for number, title, _body in blocks:
        if ID.match(title):
            claim_id(title, file, number)
    questions = [QuestionReader(file, line, title, body, report).read() for line, title, body in blocks]
    if not ok or None in questions:
        return None
    return tuple(q for q in questions if q is not None)


class QuestionReader:
    """One '### id' block of a quiz: the question text, then its answers, then 'Explanation: …'."""

    def __init__(self, file: str, line: int, heading: str, body: list[tuple[int, str]], report: Report) -> None:
        self.file, self.line, self.heading, self.body = file, line, heading, body
        self._report = report
        self.ok = True

    def problem(self, line: int, message: str) -> None:
        self._report(self.file, line, message)
        self.ok = False

    def read(self) -> Question | None:
        question_id = self.heading
        if not ID.match(question_id) or len(question_id) > ID_CHARS:
            self.problem(self.line, f"'### {self.heading}': a question's heading is its id, like '### link-owner' "
                         f"({ID_HINT}); write the question itself on the line below")
        prompt: list[str] = []
        choices: list[tuple[int, str, bool]] = []
        answer: tuple[int, str] | None = None
        accepted: list[tuple[int, str]] = []
        accepted_line: int | None = None
        explanation: list[str] = []
        explanation_line: int | None = None
        mode = "prompt"
        unticked_list = False
        fence = None
        for number, line in self.body:
            stripped = line.strip()
            was_open = fence is not None
            fence = fence_state(fence, line)
            if not was_open and fence is None and _BREAK.match(line):
                shown = "the explanation" if mode == "explanation" else f"question {question_id!r}"
                self.problem(number, _break_message(line, shown))
                continue
            checkbox, item = CHECKBOX.match(line), LIST_ITEM.match(line)
            answer_match, accepted_match = _ANSWER.match(stripped), _ACCEPTED.match(stripped)
            explanation_match = _EXPLANATION.match(stripped)
            if checkbox:
                mode = "choices"
                text = checkbox.group(2).strip()
                if not text:
                    self.problem(number, "this choice is empty: write its text after the box")
                choices.append((number, text, checkbox.group(1) != " "))
            elif answer_match:
                mode = "answer"
                if answer is not None:
                    self.problem(number, f"a second 'Answer:' line (the first is on line {answer[0]}): keep one")
                answer = (number, answer_match.group(1).strip())
            elif accepted_match:
                mode = "accepted"
                accepted_line = accepted_line or number
                if accepted_match.group(1).strip():
                    accepted.append((number, accepted_match.group(1).strip()))
            elif explanation_match:
                mode = "explanation"
                if explanation_line is not None:
                    self.problem(number, f"a second 'Explanation:' (the first is on line {explanation_line}): "
                                 "keep one")
                explanation_line = number
                explanation.append(explanation_match.group(1))
            elif mode == "accepted" and item:
                accepted.append((number, item.group(1).strip()))
            elif mode == "explanation":
                explanation.append(line)
            elif not stripped:
                if mode == "prompt":
                    prompt.append("")
            elif item and mode in ("prompt", "choices"):
                if not unticked_list:  # once per question: the fix is the same for every item
                    self.problem(number, f"a list item without a checkbox: {KINDS_HINT}")
                unticked_list = True
            elif mode == "prompt":
                prompt.append(line)
            else:
                self.problem(number, "unexpected text here: the explanation goes after 'Explanation:', and the "
                             "question text above the answers")
        text = unwrap(prompt)
        if not text:
            self.problem(self.line, f"question {question_id!r} has no question text: write it on the line below "
                         "its heading")
        elif len(text) > PROMPT_CHARS:
            self.problem(self.line, f"the question text is {len(text)} characters; keep it under {PROMPT_CHARS} "
                         "(it is sent as one message)")
        why = unwrap(explanation)
        if not why:
            where = explanation_line or self.line
            self.problem(where, f"question {question_id!r} has no explanation: add 'Explanation: …' saying why the "
                         "right answer is right (learners see it after they answer)")
        elif len(why) > PROMPT_CHARS:
            self.problem(explanation_line or self.line, f"the explanation is {len(why)} characters; keep it under "
                         f"{PROMPT_CHARS} (it is sent as one message)")
        kinds = [kind for kind, present in ((CHOICE, choices), (TRUE_FALSE, answer), (SHORT_TEXT, accepted_line))
                 if present]
        if not kinds:
            self.problem(self.line, f"question {question_id!r} has no answers, so its kind is unknown: {KINDS_HINT}")
            return None
        if len(kinds) > 1:
            self.problem(self.line, f"question {question_id!r} mixes kinds ({' and '.join(kinds)}): a question is "
                         f"one kind; {KINDS_HINT}")
            return None
        common: dict[str, Any] = dict(id=question_id, prompt=text, explanation=why, line=self.line)
        if kinds == [CHOICE]:
            correct = self._choices(choices, counted=not unticked_list)
            if not self.ok or correct is None:
                return None
            return Question(kind=CHOICE, choices=tuple(c[1] for c in choices), correct_choice=correct, **common)
        if kinds == [TRUE_FALSE]:
            assert answer is not None
            value = answer[1].lower()
            if value not in ("true", "false"):
                self.problem(answer[0], f"'Answer: {answer[1]}': a true/false question's answer is true or false; "
                             "for answers learners type, write 'Accepted answers:' and list them")
                return None
            return Question(kind=TRUE_FALSE, is_true=value == "true", **common) if self.ok else None
        answers = self._accepted(accepted, accepted_line or self.line)
        return Question(kind=SHORT_TEXT, accepted_answers=answers, **common) if self.ok else None

    def _choices(self, choices: list[tuple[int, str, bool]], *, counted: bool) -> int | None:
        if len(choices) < 2 and counted:  # else a choice without a checkbox was reported
            self.problem(choices[0][0], "a multiple-choice question needs at least two choices")
        if len(choices) > MAX_CHOICES:
            self.problem(choices[MAX_CHOICES][0], f"{len(choices)} choices: keep it to {MAX_CHOICES} at most")
        seen: dict[str, int] = {}
        for number, text, _ticked in choices:
            if len(text) > CHOICE_CHARS:
                self.problem(number, f"this choice is {len(text)} characters; keep choices under {CHOICE_CHARS} "
                             "(they are shown as buttons)")
            if text and text.lower() in seen:
                self.problem(number, f"the same choice as on line {seen[text.lower()]}: each choice must differ")
            seen.setdefault(text.lower(), number)
        ticked = [(index, number) for index, (number, _text, is_ticked) in enumerate(choices) if is_ticked]
        if not ticked:
            self.problem(choices[0][0], "no choice is marked right: tick the right one as '- [x]'")
            return None
        if len(ticked) > 1:
            lines = ", ".join(str(number) for _index, number in ticked)
            self.problem(ticked[1][1], f"{len(ticked)} choices are ticked (lines {lines}): a multiple-choice "
                         "question has exactly one right answer, so tick one")
            return None
        return ticked[0][0]

    def _accepted(self, accepted: list[tuple[int, str]], line: int) -> tuple[str, ...]:
        if not accepted:
            self.problem(line, "no accepted answers: list them below 'Accepted answers:', one '- answer' per line")
        seen: dict[str, int] = {}
        for number, answer in accepted:
            if len(answer) > ANSWER_CHARS:
                self.problem(number, f"this answer is {len(answer)} characters; accepted answers are short "
                             f"(under {ANSWER_CHARS})")
            key = answer_key(answer)
            if not key:
                self.problem(number, f"the answer {answer!r} has no letters or digits, so learners cannot type it: "
                             "punctuation and symbols are ignored when answers are compared; write it in words")
                continue
            if key in seen:
                self.problem(number, f"the same answer as on line {seen[key]}: learners' answers are compared without "
                             "case, accents, punctuation or extra spaces, and with number words as digits")
            seen.setdefault(key, number)
        return tuple(answer for _number, answer in accepted)
