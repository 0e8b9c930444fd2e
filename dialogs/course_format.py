"""The course format authors write in a text editor: read a course folder, check it, and say what is wrong where.

A course is a folder with `course.yaml` and one Markdown file per lesson (docs/courses.md describes both).
`load_course` returns the parsed course or raises `CourseInvalid` carrying *every* problem found, each with its
file, line and a message that says how to fix it. Nothing here touches the database.

YAML is read with every scalar as text (no implicit booleans, dates or floats), so `language: no` stays Norwegian
and `amount: 9.90` keeps its cents; the fields that hold numbers are converted and checked here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from storage.courses import CHOICE, FREE, PAID, SHORT_TEXT, TRUE_FALSE  # the values the database stores

COURSE_FILE = "course.yaml"
PART_CHARS = 700  # a bite-size chat message; a longer part is split at paragraph, then sentence, boundaries
PROMPT_CHARS = 700  # a question and an explanation are each sent as one message
TITLE_CHARS = 200
DESCRIPTION_CHARS = 1000
CHOICE_CHARS = 120  # choices become buttons or numbered options: short reads best everywhere
MAX_CHOICES = 6
ANSWER_CHARS = 100
MAX_MINUTES = 120

ID_CHARS = 64
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ID_HINT = "use lowercase letters, digits and hyphens"

# BCP 47 language tags as courses use them: language, optional script, optional region, optional variants.
_LANGUAGE_TAG = re.compile(
    r"^(?P<language>[a-z]{2,3})(?:-(?P<script>[a-z]{4}))?(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)$",
    re.IGNORECASE,
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# ISO 4217 minor units where they are not 2; XTR is Telegram Stars (whole stars only).
_CURRENCY_DECIMALS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF XTR".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}

_COURSE_KEYS = ("id", "title", "description", "language", "access", "price", "free_preview_lessons", "modules")
_MODULE_KEYS = ("id", "title", "lessons")
_PRICE_KEYS = ("amount", "currency")
_LESSON_KEYS = ("id", "title", "minutes")

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_SEPARATOR = re.compile(r"^\s{0,3}-{3,}\s*$")
_QUIZ_HEADING = re.compile(r"^##\s+quiz\s*#*\s*$", re.IGNORECASE)
_QUESTION_HEADING = re.compile(r"^###\s+(.*?)\s*#*\s*$")
_OTHER_HEADING = re.compile(r"^#{1,2}\s")
_CHECKBOX = re.compile(r"^\s{0,3}[-*+]\s+\[([ xX])\]\s*(.*)$")
_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_ANSWER = re.compile(r"^answer\s*:\s*(.*)$", re.IGNORECASE)
_ACCEPTED = re.compile(r"^accepted(?:\s+answers?)?\s*:\s*(.*)$", re.IGNORECASE)
_EXPLANATION = re.compile(r"^explanation\s*:\s*(.*)$", re.IGNORECASE)
# Lines that keep their own line when a paragraph's soft-wrapped lines are joined.
_OWN_LINE = re.compile(r"^\s{0,3}(?:[-*+]\s|\d{1,3}[.)]\s|#{1,6}\s|>|\|)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")

KINDS_HINT = (
    "mark choices '- [x] right' / '- [ ] wrong' (multiple choice), write 'Answer: true' or 'Answer: false' "
    "(true/false), or list 'Accepted answers:' as '- answer' lines (short text)"
)


# What a course is, once read -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a course: `file` as shown to the author (the folder they named joined with the file)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class CourseInvalid(Exception):
    """A course folder with problems; `problems` lists every one, in file and line order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the course")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Price:
    amount: Decimal
    currency: str

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

    @property
    def lessons(self) -> tuple[Lesson, ...]:
        """Every lesson in the order learners take them."""
        return tuple(lesson for module in self.modules for lesson in module.lessons)

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(question for lesson in self.lessons for question in lesson.questions)


def currency_decimals(currency: str) -> int:
    return _CURRENCY_DECIMALS.get(currency, 2)


def format_price(minor_units: int, currency: str) -> str:
    """A price kept in minor units, as people read it: 300 GBP -> '3.00 GBP'."""
    decimals = currency_decimals(currency)
    return f"{Decimal(minor_units).scaleb(-decimals):.{decimals}f} {currency}"


# Reading a course folder --------------------------------------------------------------------------------------------


def load_course(folder: str | Path) -> Course:
    """Read and check the course in `folder`; raise `CourseInvalid` with every problem if there is any."""
    course, problems = check_course(folder)
    if problems or course is None:
        raise CourseInvalid(problems)
    return course


def check_course(folder: str | Path) -> tuple[Course | None, list[Problem]]:
    """The course and the problems found in it (sorted by file and line); the course is None if it cannot be read."""
    reader = _CourseReader(Path(folder))
    course = reader.read()
    problems = sorted(reader.problems, key=lambda p: (p.file, p.line, p.message))
    return (course if not problems else None), problems


class _CourseReader:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems: list[Problem] = []
        self.lesson_ids: dict[str, tuple[str, int]] = {}
        self.question_ids: dict[str, tuple[str, int]] = {}

    def report(self, file: str, line: int, message: str) -> None:
        self.problems.append(Problem(str(self.folder / file), max(line, 1), message))

    def read(self) -> Course | None:
        if not self.folder.is_dir():
            self.report(COURSE_FILE, 1, f"{self.folder} is not a folder: name the folder that holds {COURSE_FILE}")
            return None
        if not (self.folder / COURSE_FILE).is_file():
            self.report(COURSE_FILE, 1, f"there is no {COURSE_FILE} here: every course folder needs one "
                        "(see docs/courses.md for a full example)")
            return None
        text = self._text(COURSE_FILE)
        if text is None:
            return None
        parsed, data = _parse_yaml(text, COURSE_FILE, 1, self.report)
        if not parsed:
            return None
        if not isinstance(data, YamlMap):
            self.report(COURSE_FILE, 1, "course.yaml must be a set of 'key: value' lines (id:, title:, modules: …)")
            return None
        return self._course(data)

    def _text(self, name: str) -> str | None:
        try:
            return (self.folder / name).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            line = (self.folder / name).read_bytes()[: exc.start].count(b"\n") + 1
            self.report(name, line, "this file is not UTF-8 text: save it as UTF-8 in your editor")
        except OSError as exc:
            self.report(name, 1, f"cannot read this file: {exc.strerror or exc}")
        return None

    # course.yaml

    def _course(self, data: YamlMap) -> Course | None:
        fields = _Fields(data, COURSE_FILE, self.report)
        fields.reject_unknown(_COURSE_KEYS)
        course_id = fields.identifier("id", what="course")
        title = fields.text("title", limit=TITLE_CHARS)
        description = fields.text("description", limit=DESCRIPTION_CHARS)
        language = self._language(fields)
        access = fields.text("access", limit=8)
        if access is not None and access not in (FREE, PAID):
            fields.problem("access", f"access is {access!r}: write 'access: free' or 'access: paid'")
            access = None
        price = self._price(fields, access)
        preview = self._preview(fields, access)
        modules, lesson_count = self._modules(fields)
        if access == PAID and preview is not None and lesson_count and preview >= lesson_count:
            fields.problem("free_preview_lessons", f"the free preview covers all {lesson_count} lessons, so nothing "
                           f"is left to sell: make it smaller than {lesson_count}, or write 'access: free'")
        if self.problems or None in (course_id, title, description, language, access) or modules is None:
            return None
        return Course(
            id=course_id, title=title, description=description, language=language, access=access,  # type: ignore[arg-type]
            modules=modules, folder=self.folder, price=price, free_preview_lessons=preview or 0,
        )

    def _language(self, fields: _Fields) -> str | None:
        tag = fields.text("language", limit=35)
        if tag is None:
            return None
        match = _LANGUAGE_TAG.match(tag)
        if match is None:
            hint = f" (BCP 47 joins with hyphens: {tag.replace('_', '-')})" if "_" in tag else ""
            fields.problem("language", f"language {tag!r} is not a BCP 47 language tag{hint}: "
                           "write e.g. en, es or pt-BR")
            return None
        parts = [match["language"].lower()]
        if match["script"]:
            parts.append(match["script"].title())
        if match["region"]:
            parts.append(match["region"].upper())
        parts += [variant.lower() for variant in match["variants"].split("-") if variant]
        return "-".join(parts)

    def _price(self, fields: _Fields, access: str | None) -> Price | None:
        if "price" not in fields.data:
            if access == PAID:
                fields.problem("access", "a paid course needs a price: add 'price:' with 'amount: 9.90' and "
                               "'currency: EUR' below it (indented)")
            return None
        if access == FREE:
            fields.problem("price", "a free course has no price: remove 'price:', or write 'access: paid'")
            return None
        value = fields.data["price"]
        if not isinstance(value, YamlMap):
            fields.problem("price", "price needs two indented lines below it: 'amount: 9.90' and 'currency: EUR'")
            return None
        price = _Fields(value, COURSE_FILE, self.report)
        price.reject_unknown(_PRICE_KEYS)
        amount_text, currency = price.text("amount", limit=20), price.text("currency", limit=20)
        if currency is not None and not _CURRENCY.match(currency):
            price.problem("currency", f"currency {currency!r} is not an ISO 4217 code: write three capital letters, "
                          "e.g. EUR, USD or GBP")
            currency = None
        if amount_text is None or currency is None:
            return None
        try:
            amount = Decimal(amount_text)
        except InvalidOperation:
            amount = Decimal("NaN")
        decimals = currency_decimals(currency)
        if not amount.is_finite() or amount <= 0:
            price.problem("amount", f"amount {amount_text!r} is not a price: write a positive number like 9.90")
            return None
        if -amount.as_tuple().exponent > decimals:  # type: ignore[operator]
            price.problem("amount", f"{currency} has {decimals} decimal places, so {amount_text} cannot be charged: "
                          f"round it to {decimals} places")
            return None
        return Price(amount, currency)

    def _preview(self, fields: _Fields, access: str | None) -> int | None:
        if "free_preview_lessons" not in fields.data:
            return None
        if access == FREE:
            fields.problem("free_preview_lessons", "a free course is open in full, so it has no preview: remove "
                           "free_preview_lessons, or write 'access: paid'")
            return None
        return fields.number("free_preview_lessons", low=0, high=1000)

    def _modules(self, fields: _Fields) -> tuple[tuple[Module, ...] | None, int]:
        """The modules with their lessons read, and how many lesson files they list."""
        if "modules" not in fields.data:
            fields.missing("modules", "list the modules, each with id:, title: and its lessons:")
            return None, 0
        items = fields.data["modules"]
        if not isinstance(items, YamlList) or not items:
            fields.problem("modules", "modules must be a list: one '- id: …' entry per module, each with title: and "
                           "lessons:")
            return None, 0
        files = self._lesson_files()
        listed = self._listed_files(items, files)
        for file in sorted(set(files) - set(listed)):
            self.report(file, 1, f"{file} is not listed in any module of {COURSE_FILE}: add it to a module's "
                        "lessons, or rename it to start with '_' to keep it as a draft")
        lessons = {file: self._lesson(file) for file in listed if file in files}
        modules: list[Module] = []
        module_ids: dict[str, int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, YamlMap):
                self.report(COURSE_FILE, items.lines[index], "each module is '- id: …' with title: and lessons: "
                            "indented below it")
                continue
            module = _Fields(item, COURSE_FILE, self.report)
            module.reject_unknown(_MODULE_KEYS)
            module_id = module.identifier("id", what="module")
            title = module.text("title", limit=TITLE_CHARS)
            if module_id is not None and module_id in module_ids:
                module.problem("id", f"module id {module_id!r} is already used on line {module_ids[module_id]}: "
                               "give each module its own id")
            elif module_id is not None:
                module_ids[module_id] = module.line("id")
            entries = self._entries(module)
            found = tuple(lesson for file in entries or () if (lesson := lessons.get(file)) is not None)
            if module_id is not None and title is not None and entries and len(found) == len(entries):
                modules.append(Module(module_id, title, found))
        complete = len(modules) == len(items)
        return (tuple(modules) if complete else None), len(listed)

    def _entries(self, module: _Fields) -> list[str] | None:
        """The lesson files a module lists (each was checked, and reported if unusable, while listing)."""
        items = module.data.get("lessons")
        if items is None:
            module.missing("lessons", "list the module's lesson files under 'lessons:', e.g. '- lessons/intro.md'")
            return None
        if not isinstance(items, YamlList) or not items:
            module.problem("lessons", "lessons must be a list of lesson files, one '- lessons/intro.md' per line")
            return None
        return [str(PurePosixPath(item.strip())) if isinstance(item, str) and item.strip() else "" for item in items]

    def _listed_files(self, modules: YamlList, files: dict[str, Path]) -> list[str]:
        """Every lesson file the modules name, in course order; reports entries that name no usable file."""
        listed: list[str] = []
        seen: dict[str, int] = {}
        for module in modules:
            items = module.get("lessons") if isinstance(module, YamlMap) else None
            if not isinstance(items, YamlList):
                continue
            for index, entry in enumerate(items):
                line = items.lines[index]
                if not isinstance(entry, str) or not entry.strip():
                    self.report(COURSE_FILE, line, "each lesson entry is one file name, e.g. '- lessons/intro.md'")
                    continue
                path = PurePosixPath(entry.strip())
                name = str(path)
                if path.is_absolute() or ".." in path.parts:
                    self.report(COURSE_FILE, line, f"{entry} is outside the course folder: name lesson files "
                                f"relative to the folder of {COURSE_FILE}")
                elif name in seen:
                    self.report(COURSE_FILE, line, f"{name} is already listed on line {seen[name]}: a lesson "
                                "appears once in a course")
                elif path.suffix != ".md":
                    self.report(COURSE_FILE, line, f"{name} is not a Markdown file: lesson files end in .md")
                elif name not in files:
                    close = difflib.get_close_matches(name, list(files), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]}?" if close else ": create it, or correct the name"
                    self.report(COURSE_FILE, line, f"there is no lesson file {name} in the course folder{hint}")
                if name not in seen:
                    seen[name] = line
                    listed.append(name)
        return listed

    def _lesson_files(self) -> dict[str, Path]:
        """Every lesson file of the folder: *.md except README.md and anything under a name starting with _ or ."""
        files: dict[str, Path] = {}
        for path in self.folder.rglob("*.md"):
            relative = path.relative_to(self.folder)
            if any(part.startswith(("_", ".")) for part in relative.parts) or path.name.lower() == "readme.md":
                continue
            if path.is_file():
                files[relative.as_posix()] = path
        return files

    # lesson files

    def _lesson(self, file: str) -> Lesson | None:
        text = self._text(file)
        if text is None:
            return None
        lines = text.splitlines()
        if not lines or lines[0].strip() != "---":
            self.report(file, 1, "a lesson file starts with front matter: a line '---', then 'id: …' and "
                        "'title: …', then another '---'")
            return None
        end = _front_matter_end(lines)
        if end is None:
            self.report(file, 1, "the front matter is never closed: add a line '---' after the title")
            return None
        parsed, data = _parse_yaml("\n".join(lines[1:end]), file, 2, self.report)
        if not parsed:
            return None
        if not isinstance(data, YamlMap):
            self.report(file, 2, "the front matter needs 'id: …' and 'title: …' lines between the two '---' lines")
            return None
        meta = _Fields(data, file, self.report)
        meta.reject_unknown(_LESSON_KEYS)
        lesson_id = meta.identifier("id", what="lesson")
        title = meta.text("title", limit=TITLE_CHARS)
        minutes = meta.number("minutes", low=1, high=MAX_MINUTES) if "minutes" in data else None
        if lesson_id is not None:
            self._claim("lesson", lesson_id, file, meta.line("id"), self.lesson_ids)
        body = list(enumerate(lines[end + 1:], start=end + 2))
        text_lines, quiz_lines = _split_quiz(body)
        parts = self._parts(file, text_lines, after_line=end + 1)
        questions = self._quiz(file, quiz_lines)
        if lesson_id is None or title is None or parts is None or questions is None:
            return None
        return Lesson(lesson_id, title, parts, questions, file, minutes)

    def _claim(self, what: str, claimed: str, file: str, line: int, owners: dict[str, tuple[str, int]]) -> None:
        """Ids are unique in a course: the first file and line to use one keeps it; later uses are reported."""
        if claimed in owners:
            owner_file, owner_line = owners[claimed]
            self.report(file, line, f"{what} id {claimed!r} is already used at {owner_file}:{owner_line}: give "
                        f"each {what} of the course its own id")
        else:
            owners[claimed] = (file, line)

    def _parts(self, file: str, body: list[tuple[int, str]], *, after_line: int) -> tuple[str, ...] | None:
        chunks: list[tuple[int, list[str]]] = [(after_line, [])]  # (line of the separator before it, its lines)
        fence = None
        for number, line in body:
            fence = _fence_state(fence, line)
            if fence is None and _SEPARATOR.match(line):
                chunks.append((number, []))
            else:
                chunks[-1][1].append(line)
        if all(not "\n".join(lines).strip() for _line, lines in chunks):
            self.report(file, after_line + 1, "this lesson has no text: write it below the front matter, in parts "
                        "separated by lines of '---'")
            return None
        parts: list[str] = []
        ok = True
        for index, (line, lines) in enumerate(chunks):
            text = "\n".join(lines).strip()
            if not text:
                extra = chunks[index + 1][0] if index + 1 < len(chunks) else line  # the '---' that makes it empty
                self.report(file, extra, "an empty part: remove this extra '---' (a part is the text between two "
                            "'---' lines)")
                ok = False
                continue
            parts.extend(split_part(text))
        return tuple(parts) if ok else None

    def _quiz(self, file: str, lines: list[tuple[int, str]]) -> tuple[Question, ...] | None:
        if not lines:
            return ()
        blocks: list[tuple[int, str, list[tuple[int, str]]]] = []
        ok = True
        fence = None
        for number, line in lines[1:]:  # lines[0] is the ## Quiz heading
            fence = _fence_state(fence, line)
            heading = _QUESTION_HEADING.match(line) if fence is None else None
            if heading:
                blocks.append((number, heading.group(1), []))
            elif fence is None and _OTHER_HEADING.match(line):
                self.report(file, number, "the quiz is the last section of a lesson: move this heading and its text "
                            "above '## Quiz'")
                ok = False
            elif blocks:
                blocks[-1][2].append((number, line))
            elif line.strip():
                self.report(file, number, "quiz questions start with a '### question-id' heading: put this text "
                            "under one")
                ok = False
        if not blocks:
            self.report(file, lines[0][0], "the quiz has no questions: add '### question-id' headings below "
                        "'## Quiz', or remove the heading")
            return None
        for line, title, _body in blocks:
            if _ID.match(title):
                self._claim("question", title, file, line, self.question_ids)
        questions = [_QuestionReader(file, line, title, body, self.report).read() for line, title, body in blocks]
        if not ok or None in questions:
            return None
        return tuple(q for q in questions if q is not None)


class _QuestionReader:
    """One '### id' block of a quiz: the question text, then its answers, then 'Explanation: …'."""

    def __init__(self, file: str, line: int, heading: str, body: list[tuple[int, str]], report: Any) -> None:
        self.file, self.line, self.heading, self.body = file, line, heading, body
        self._report = report
        self.ok = True

    def problem(self, line: int, message: str) -> None:
        self._report(self.file, line, message)
        self.ok = False

    def read(self) -> Question | None:
        question_id = self.heading
        if not _ID.match(question_id) or len(question_id) > ID_CHARS:
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
        for number, line in self.body:
            stripped = line.strip()
            checkbox, item = _CHECKBOX.match(line), _LIST_ITEM.match(line)
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
        text = _unwrap(prompt)
        if not text:
            self.problem(self.line, f"question {question_id!r} has no question text: write it on the line below "
                         "its heading")
        elif len(text) > PROMPT_CHARS:
            self.problem(self.line, f"the question text is {len(text)} characters; keep it under {PROMPT_CHARS} "
                         "(it is sent as one message)")
        why = _unwrap(explanation)
        if not why:
            line = explanation_line or self.line
            self.problem(line, f"question {question_id!r} has no explanation: add 'Explanation: …' saying why the "
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
        common = dict(id=question_id, prompt=text, explanation=why, line=self.line)
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
            key = normalize_answer(answer)
            if key in seen:
                self.problem(number, f"the same answer as on line {seen[key]} (case and spaces do not count)")
            seen.setdefault(key, number)
        return tuple(answer for _number, answer in accepted)


def normalize_answer(text: str) -> str:
    """How a typed answer is compared with the accepted ones: case, outer punctuation and extra spaces ignored."""
    return " ".join(text.casefold().strip(" \t.!?,;:\"'“”‘’").split())


# Bite-size parts ----------------------------------------------------------------------------------------------------


def split_part(text: str, limit: int = PART_CHARS) -> list[str]:
    """A part as chat messages of about equal size, each at most `limit` characters where the text allows it.

    Soft-wrapped lines of a paragraph are joined first (Markdown reads them as one line). A part breaks between
    blocks (paragraphs, lists, code), then between the lines of a block (list items), then after a sentence. A code
    block and a single sentence are never cut, so they may exceed `limit`; a channel splits such a message at its
    own hard limit when it sends it.
    """
    blocks = _blocks(text)
    whole = "\n\n".join(blocks)
    if len(whole) <= limit:
        return [whole]
    target = len(whole) / -(-len(whole) // limit)  # the same size for each of the fewest parts that fit
    parts: list[str] = []
    for joiner, unit in _units(blocks, limit):
        if parts and len(parts[-1]) < target and len(parts[-1]) + len(joiner) + len(unit) <= limit:
            parts[-1] += joiner + unit
        else:
            parts.append(unit)
    return parts


def _units(blocks: list[str], limit: int) -> list[tuple[str, str]]:
    """The pieces a long part may break between, each with the text that joins it to the piece before."""
    units: list[tuple[str, str]] = []
    for block in blocks:
        if len(block) <= limit or _FENCE.match(block):
            units.append(("\n\n", block))
            continue
        for index, line in enumerate(block.split("\n")):
            joiner = "\n\n" if index == 0 else "\n"
            sentences = [line] if len(line) <= limit else _SENTENCE_END.split(line)
            units.extend((joiner if number == 0 else " ", sentence) for number, sentence in enumerate(sentences))
    return units


def _blocks(text: str) -> list[str]:
    """Markdown blocks: runs of lines between blank lines (paragraphs unwrapped), a fenced code block whole."""
    blocks: list[list[str]] = [[]]
    fence = None
    for line in text.splitlines():
        inside = fence is not None
        fence = _fence_state(fence, line)
        if inside or fence is not None:  # a code block is a block of its own, blank lines and all
            if not inside and blocks[-1]:
                blocks.append([])
            blocks[-1].append(line)
            if inside and fence is None:
                blocks.append([])
        elif not line.strip():
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [
        "\n".join(lines).strip("\n") if _FENCE.match(lines[0]) else _unwrap(lines)
        for lines in blocks
        if any(line.strip() for line in lines)
    ]


def _unwrap(lines: list[str]) -> str:
    """Join soft-wrapped lines; list items, headings, quotes, table rows and hard breaks (two spaces, a backslash)
    keep their own line, and an indented line under a list item continues that item."""
    joined: list[str] = []
    for line in lines:
        if joined and _continues(joined[-1], line):
            joined[-1] = joined[-1].rstrip() + " " + line.strip()
        else:
            joined.append(line)
    return "\n".join(line.rstrip().removesuffix("\\").rstrip() for line in joined).strip("\n")


def _continues(previous: str, line: str) -> bool:
    if not line.strip() or not previous.strip() or previous.endswith(("  ", "\\")) or _OWN_LINE.match(line):
        return False
    if _OWN_LINE.match(previous):
        return _LIST_ITEM.match(previous) is not None and line.startswith((" ", "\t"))
    return True


def _fence_state(fence: str | None, line: str) -> str | None:
    """Track fenced code blocks: returns the open fence's marker, or None outside one."""
    match = _FENCE.match(line)
    if fence is None:
        return match.group(1) if match else None
    if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and \
            not line.strip()[len(match.group(1)):].strip():
        return None
    return fence


def _front_matter_end(lines: list[str]) -> int | None:
    """The index of the '---' that closes the front matter, or None if lesson text starts before one does."""
    for index in range(1, len(lines)):
        line = lines[index]
        if line.strip() == "---":
            return index
        if line.strip() and not line[0].isspace() and not line.startswith("#") and ":" not in line:
            return None  # prose: the author never closed the front matter
    return None


def _split_quiz(body: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The lesson text and the quiz section (from its '## Quiz' heading to the end of the file)."""
    fence = None
    for index, (_number, line) in enumerate(body):
        fence = _fence_state(fence, line)
        if fence is None and _QUIZ_HEADING.match(line):
            return body[:index], body[index:]
    return body, []


# YAML with line numbers ---------------------------------------------------------------------------------------------


class YamlMap(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers where it and each key are (1-based lines), and keys written twice."""

    line: int
    key_lines: dict[str, int]
    repeated: list[tuple[str, int]]


class YamlList(list):  # type: ignore[type-arg]
    line: int
    lines: list[int]


class _LineLoader(yaml.BaseLoader):
    """Every scalar is a string (BaseLoader); mappings and lists carry their line numbers."""

    line_offset = 0

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> YamlMap:  # type: ignore[override]
        mapping = YamlMap()
        mapping.line = node.start_mark.line + 1 + self.line_offset
        mapping.key_lines, mapping.repeated = {}, []
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            key = key if isinstance(key, str) else str(key)
            line = key_node.start_mark.line + 1 + self.line_offset
            if key in mapping:
                mapping.repeated.append((key, line))
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = line
        return mapping

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> YamlList:  # type: ignore[override]
        items = YamlList(self.construct_object(child, deep=True) for child in node.value)
        items.line = node.start_mark.line + 1 + self.line_offset
        items.lines = [child.start_mark.line + 1 + self.line_offset for child in node.value]
        return items


def _parse_yaml(text: str, file: str, first_line: int, report: Any) -> tuple[bool, Any]:
    """Parse YAML whose first line is line `first_line` of `file`: (True, data), or (False, None) after reporting
    the syntax error at its line with a hint."""
    loader = _LineLoader(text)
    loader.line_offset = first_line - 1
    try:
        return True, loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An unclosed bracket or a line without ':' is found a line or more later; the context says where it began.
        if exc.context_mark is not None and (
            "<stream end>" in str(exc.problem) or any(w in str(exc.context) for w in ("simple key", "flow"))
        ):
            mark = exc.context_mark
        line = (mark.line + first_line) if mark is not None else first_line
        report(file, line, f"this is not valid YAML ({exc.problem or exc.context}){_yaml_hint(exc)}")
    except yaml.YAMLError as exc:
        report(file, first_line, f"this is not valid YAML: {exc}")
    finally:
        loader.dispose()
    return False, None


def _yaml_hint(exc: yaml.MarkedYAMLError) -> str:
    problem = f"{exc.problem} {exc.context}"
    if "'\\t'" in problem or "tab" in problem:
        return ": indent with spaces, not tabs"
    if "flow" in problem:
        return ": a '[' or '{' opened here is never closed (a value that starts with one must be in quotes)"
    if "mapping values are not allowed" in problem:
        return ": a value that contains ': ' must be in quotes, e.g. title: \"Sleep: the basics\""
    if "could not find expected ':'" in problem or "simple key" in problem:
        return ": each line is 'key: value', and a value that spans lines must be indented"
    if "found character" in problem or "cannot start any token" in problem:
        return ": put a value that starts with a special character (` @ % * & !) in quotes"
    if "expected <block end>" in problem or "did not find expected" in problem:
        return ": check the indentation: items of one list or mapping line up under each other"
    return ": check the line for a missing space after ':' or a stray character"


class _Fields:
    """Typed access to a YAML mapping's fields; each bad or missing field is reported at its line."""

    def __init__(self, data: YamlMap, file: str, report: Any) -> None:
        self.data, self.file, self._report = data, file, report
        for key, line in data.repeated:
            self._report(file, line, f"{key!r} is written twice in this block: keep one")

    def line(self, key: str) -> int:
        return self.data.key_lines.get(key, self.data.line)

    def problem(self, key: str, message: str) -> None:
        self._report(self.file, self.line(key), message)

    def missing(self, key: str, hint: str) -> None:
        self._report(self.file, self.data.line, f"'{key}:' is missing: {hint}")

    def reject_unknown(self, known: Iterable[str]) -> None:
        known = tuple(known)
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"the fields here are {', '.join(known)}"
                self.problem(key, f"unknown field '{key}': {hint}")

    def text(self, key: str, *, limit: int) -> str | None:
        if key not in self.data:
            self.missing(key, f"add '{key}: …'")
            return None
        value = self.data[key]
        if not isinstance(value, str):
            self.problem(key, f"{key} must be text on one line (or a '>' block), not a list or mapping")
            return None
        value = value.strip()
        if not value:
            self.problem(key, f"{key} is empty: write it after '{key}:'")
            return None
        if len(value) > limit:
            self.problem(key, f"{key} is {len(value)} characters; keep it under {limit}")
            return None
        return value

    def identifier(self, key: str, *, what: str) -> str | None:
        value = self.text(key, limit=ID_CHARS)
        if value is not None and not _ID.match(value):
            self.problem(key, f"{what} id {value!r} cannot be used: {ID_HINT}, like morning-light. Once "
                         "learners have started, keep it as it is: progress is matched by id")
            return None
        return value

    def number(self, key: str, *, low: int, high: int) -> int | None:
        value = self.text(key, limit=12)
        if value is None:
            return None
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            self.problem(key, f"{key} is {value!r}: write a whole number from {low} to {high}")
            return None
        return int(value)


__all__ = [
    "CHOICE", "COURSE_FILE", "Course", "CourseInvalid", "FREE", "Lesson", "Module", "PAID", "PART_CHARS", "Price",
    "Problem", "Question", "SHORT_TEXT", "TRUE_FALSE", "check_course", "load_course", "normalize_answer",
    "split_part",
]
