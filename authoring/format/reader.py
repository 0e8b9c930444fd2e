"""Reading a course folder: `course.yaml` and one Markdown file per lesson (docs/courses.md describes both).

`load_course` returns the parsed course or raises `CourseInvalid` carrying *every* problem found, each with its
file, line and a message that says how to fix it. Nothing here touches the database.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from pathlib import Path, PurePosixPath

from authoring.format.course import FREE, PAID, Course, Lesson, Module, Price, currency_decimals, format_price
from authoring.format.currencies import STARS, currency_problem, is_currency
from authoring.format.fields import Fields
from authoring.format.markup import unsupported_markdown
from authoring.format.parts import fence_state, split_part, unclosed_fence
from authoring.format.problems import CourseInvalid, Problem
from authoring.format.quiz import check_quiz_outside, read_quiz, split_quiz
from authoring.format.yaml_lines import YamlList, YamlMap, parse_yaml
from bot.text import counted

COURSE_FILE = "course.yaml"
TITLE_CHARS = 200
DESCRIPTION_CHARS = 1000
MAX_MINUTES = 120
# the most characters a lesson file may hold: a bite-size lesson is a few thousand; a longer file is a book pasted
# into one lesson, which would be sent as hundreds of messages and embedded as thousands of passages
LESSON_CHARS = 200_000

# BCP 47 language tags as courses use them: language, optional script, optional region, optional variants.
_LANGUAGE_TAG = re.compile(
    r"^(?P<language>[a-z]{2,3})(?:-(?P<script>[a-z]{4}))?(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)$",
    re.IGNORECASE,
)

_COURSE_KEYS = (
    "id", "title", "description", "language", "access", "price", "free_preview_lessons", "pass_mark", "modules",
)
_MODULE_KEYS = ("id", "title", "lessons")
_PRICE_KEYS = ("amount", "currency", "period")
PERIODS = ("month",)  # what a price may be charged by, besides once
_LESSON_KEYS = ("id", "title", "minutes")

_SEPARATOR = re.compile(r"^\s{0,3}-{3,}\s*$")
# Characters that are not text: C0 and C1 controls and DEL, except tab, newline and carriage return. A database
# cannot store some (PostgreSQL refuses NUL) and chat apps drop or reject the rest.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # lines as editors number them
# An amount as authors write one: digits with an optional decimal point (no sign, exponent, spaces or separators).
_AMOUNT = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
MAX_PRICE_MINOR = 99_999_999  # the largest amount Stripe charges, in minor units (999,999.99 EUR)


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
        self.outside: dict[str, Path] = {}  # lesson files that are links to a file outside the folder: their targets

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
        parsed, data = parse_yaml(text, COURSE_FILE, 1, self.report) if text is not None else (False, None)
        if parsed and not isinstance(data, YamlMap):
            self.report(COURSE_FILE, 1, "course.yaml must be a set of 'key: value' lines (id:, title:, modules: …)")
        if not isinstance(data, YamlMap):
            self._check_lessons_alone()
            return None
        return self._course(data)

    def _check_lessons_alone(self) -> None:
        """course.yaml cannot say which lessons there are: check every lesson file of the folder anyway, so one
        run reports the problems of every file."""
        for file in sorted(self._lesson_files()):
            if file not in self.outside:
                self._lesson(file)

    def _text(self, name: str) -> str | None:
        """A file's text, or None after reporting why it cannot be read (every file of a course is read here)."""
        try:
            text = (self.folder / name).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            line = (self.folder / name).read_bytes()[: exc.start].count(b"\n") + 1
            self.report(name, line, "this file is not UTF-8 text: save it as UTF-8 in your editor")
        except OSError as exc:
            self.report(name, 1, f"cannot read this file: {exc.strerror or exc}")
        else:
            if _CONTROL.search(text) is None:
                return text
            lines = [(number, found) for number, line in enumerate(_LINE_BREAK.split(text), start=1)
                     if (found := _CONTROL.search(line))]
            (line, control), more = lines[0], len(lines) - 1
            also = f" ({counted(more, 'more line')} below {'has' if more == 1 else 'have'} one too)" if more else ""
            self.report(name, line, f"this line contains the control character U+{ord(control.group()):04X}, which "
                        f"is not text and cannot be stored{also}: delete it (editors often show it as a box, or not "
                        "at all)")
        return None

    # course.yaml

    def _course(self, data: YamlMap) -> Course | None:
        fields = Fields(data, COURSE_FILE, self.report)
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
        # percent of the quiz questions right at the first try for a certificate; without it, none is needed
        pass_mark = fields.number("pass_mark", low=0, high=100) if "pass_mark" in fields.data else None
        modules, lesson_count = self._modules(fields)
        if access == PAID and preview is not None and lesson_count and preview >= lesson_count:
            fields.problem("free_preview_lessons", f"the free preview covers all {lesson_count} lessons, so nothing "
                           f"is left to sell: make it smaller than {lesson_count}, or write 'access: free'")
        if (self.problems or course_id is None or title is None or description is None or language is None
                or access is None or modules is None):
            return None
        return Course(
            id=course_id, title=title, description=description, language=language, access=access,
            modules=modules, folder=self.folder, price=price, free_preview_lessons=preview or 0,
            pass_mark=pass_mark,
        )

    def _language(self, fields: Fields) -> str | None:
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

    def _price(self, fields: Fields, access: str | None) -> Price | None:
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
        price = Fields(value, COURSE_FILE, self.report)
        price.reject_unknown(_PRICE_KEYS)
        amount_text, currency = price.text("amount", limit=20), price.text("currency", limit=20)
        period = price.text("period", limit=20) if "period" in price.data else None
        ok = amount_text is not None and currency is not None
        if currency is not None and not is_currency(currency):
            price.problem("currency", currency_problem(currency))
            currency, ok = None, False
        if period is not None and period not in PERIODS:
            price.problem("period", f"period {period!r} is not one Lessonbot sells by: write 'period: month' for a "
                          "monthly subscription, or leave it out for a one-off price")
            ok = False
        elif period is not None and currency == STARS:
            price.problem("period", "a monthly price is charged through Stripe, so it needs a currency Stripe takes "
                          "(EUR, USD, GBP…), not XTR")
            ok = False
        amount = self._amount(price, amount_text, currency)
        return Price(amount, currency, period) if ok and amount is not None and currency is not None else None

    @staticmethod
    def _amount(price: Fields, amount_text: str | None, currency: str | None) -> Decimal | None:
        """The amount, checked on its own and, when the currency is known, against it."""
        if amount_text is None:
            return None
        # plain digits only: Decimal would also take '1e999999999', 'Infinity' or '1_000'
        amount = Decimal(amount_text) if _AMOUNT.match(amount_text) else Decimal(0)
        if amount <= 0:
            comma = ", with a point for decimals and no thousands separator" if "," in amount_text else ""
            price.problem("amount", f"amount {amount_text!r} is not a price: write a positive number in plain "
                          f"digits{comma}, like 9.90")
            return None
        if currency is None:
            return None
        decimals = currency_decimals(currency)
        if -amount.as_tuple().exponent > decimals:  # type: ignore[operator]  # finite: the exponent is an int
            price.problem("amount", f"{currency} has {decimals} decimal places, so {amount_text} cannot be charged: "
                          f"round it to {decimals} places")
            return None
        if amount.scaleb(decimals) > MAX_PRICE_MINOR:
            price.problem("amount", f"{amount_text} {currency} is more than payments can take: keep the price at "
                          f"most {format_price(MAX_PRICE_MINOR, currency)}")
            return None
        return amount

    def _preview(self, fields: Fields, access: str | None) -> int | None:
        if "free_preview_lessons" not in fields.data:
            return None
        if access == FREE:
            fields.problem("free_preview_lessons", "a free course is open in full, so it has no preview: remove "
                           "free_preview_lessons, or write 'access: paid'")
            return None
        return fields.number("free_preview_lessons", low=0, high=1000)

    def _modules(self, fields: Fields) -> tuple[tuple[Module, ...] | None, int]:
        """The modules with their lessons read, and how many lesson files they list."""
        if "modules" not in fields.data:
            fields.missing("modules", "list the modules, each with id:, title: and its lessons:")
            self._check_lessons_alone()
            return None, 0
        items = fields.data["modules"]
        if not isinstance(items, YamlList) or not items:
            fields.problem("modules", "modules must be a list: one '- id: …' entry per module, each with title: and "
                           "lessons:")
            self._check_lessons_alone()
            return None, 0
        files = self._lesson_files()
        listed = self._listed_files(items, files)
        for file in sorted(set(files) - set(listed)):
            self.report(file, 1, f"{file} is not listed in any module of {COURSE_FILE}: add it to a module's "
                        "lessons, or rename it to start with '_' to keep it as a draft")
        lessons = {file: self._lesson(file) for file in listed if file in files and file not in self.outside}
        modules: list[Module] = []
        module_ids: dict[str, int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, YamlMap):
                self.report(COURSE_FILE, items.lines[index], "each module is '- id: …' with title: and lessons: "
                            "indented below it")
                continue
            module = Fields(item, COURSE_FILE, self.report)
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

    def _entries(self, module: Fields) -> list[str] | None:
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
                elif name in self.outside:
                    self.report(COURSE_FILE, line, f"{name} is a link to {self.outside[name]}, outside the course "
                                "folder: copy that file into the folder instead of linking to it")
                elif name not in files:
                    self.report(COURSE_FILE, line, self._no_lesson_file(name, files))
                if name not in seen:
                    seen[name] = line
                    listed.append(name)
        return listed

    def _no_lesson_file(self, name: str, files: dict[str, Path]) -> str:
        """Why a listed name is not a lesson file: a draft, a README, or a name with no file (the closest one)."""
        path = PurePosixPath(name)
        if (self.folder / name).is_file():
            draft = next((part for part in path.parts if part.startswith(("_", "."))), None)
            if draft is not None:
                return (f"{name} is a draft ({draft} starts with '{draft[0]}'), so it is left out of the course: "
                        f"rename it without the '{draft[0]}' to list it")
            if path.name.lower() == "readme.md":
                return f"{name} holds notes for authors, never a lesson: put the lesson in a file of its own"
        close = difflib.get_close_matches(name, list(files), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ": create it, or correct the name"
        return f"there is no lesson file {name} in the course folder{hint}"

    def _lesson_files(self) -> dict[str, Path]:
        """Every lesson file of the folder: *.md except README.md and anything under a name starting with _ or .
        A link to a file outside the folder is noted in `outside`, never read."""
        files: dict[str, Path] = {}
        inside = self.folder.resolve()
        for path in self.folder.rglob("*.md"):
            relative = path.relative_to(self.folder)
            if any(part.startswith(("_", ".")) for part in relative.parts) or path.name.lower() == "readme.md":
                continue
            if path.is_file():
                files[relative.as_posix()] = path
                target = path.resolve()
                if not target.is_relative_to(inside):
                    self.outside[relative.as_posix()] = target
        return files

    # lesson files

    def _lesson(self, file: str) -> Lesson | None:
        text = self._text(file)
        if text is None:
            return None
        if len(text) > LESSON_CHARS:  # nothing more to check: its text would be a flood of problems or of parts
            self.report(file, 1, f"this lesson is {len(text):,} characters long, more than the {LESSON_CHARS:,} a "
                        "lesson may hold (a bite-size lesson is a few thousand): split it into several lessons, each "
                        "a file of its own listed in course.yaml")
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
        reported = len(self.problems)
        meta = self._front_matter(file, lines[1:end])  # its problems do not hide those of the text and quiz
        body = list(enumerate(lines[end + 1:], start=end + 2))
        opened = unclosed_fence(body)
        if opened is not None:  # the rest of the file, quiz and all, would be read as code: nothing more to check
            number, marker = opened
            self.report(file, number, f"a {marker} code block opened on line {number} is never closed: add a line "
                        f"{marker} where the code ends (until then the rest of the lesson, its quiz too, is code)")
            return None
        text_lines, quiz_lines = split_quiz(body)
        check_quiz_outside(file, text_lines, quiz_line=quiz_lines[0][0] if quiz_lines else None, report=self.report)
        for number, message in unsupported_markdown(body):
            self.report(file, number, message)
        parts = self._parts(file, text_lines, after_line=end + 1)
        questions = read_quiz(file, quiz_lines, report=self.report, claim_id=self._claim_question)
        if meta is None or parts is None or questions is None or len(self.problems) > reported:
            return None
        lesson_id, title, minutes = meta
        return Lesson(lesson_id, title, parts, questions, file, minutes)

    def _front_matter(self, file: str, lines: list[str]) -> tuple[str, str, int | None] | None:
        """The lesson's id, title and minutes from its front matter (`lines`, from the file's line 2), or None after
        reporting what is wrong."""
        parsed, data = parse_yaml("\n".join(lines), file, 2, self.report)
        if not parsed:
            return None
        if not isinstance(data, YamlMap):
            self.report(file, 2, "the front matter needs 'id: …' and 'title: …' lines between the two '---' lines")
            return None
        meta = Fields(data, file, self.report)
        meta.reject_unknown(_LESSON_KEYS)
        lesson_id = meta.identifier("id", what="lesson")
        title = meta.text("title", limit=TITLE_CHARS)
        minutes = meta.number("minutes", low=1, high=MAX_MINUTES) if "minutes" in data else None
        if lesson_id is not None:
            self._claim("lesson", lesson_id, file, meta.line("id"), self.lesson_ids)
        if lesson_id is None or title is None:
            return None
        return lesson_id, title, minutes

    def _claim(self, what: str, claimed: str, file: str, line: int, owners: dict[str, tuple[str, int]]) -> None:
        """Ids are unique in a course: the first file and line to use one keeps it; later uses are reported."""
        if claimed in owners:
            owner_file, owner_line = owners[claimed]
            self.report(file, line, f"{what} id {claimed!r} is already used at {owner_file}:{owner_line}: give "
                        f"each {what} of the course its own id")
        else:
            owners[claimed] = (file, line)

    def _claim_question(self, question_id: str, file: str, line: int) -> None:
        self._claim("question", question_id, file, line, self.question_ids)

    def _parts(self, file: str, body: list[tuple[int, str]], *, after_line: int) -> tuple[str, ...] | None:
        chunks: list[tuple[int, list[str]]] = [(after_line, [])]  # (line of the separator before it, its lines)
        fence = None
        for number, line in body:
            fence = fence_state(fence, line)
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
        for index, (start, lines) in enumerate(chunks):
            text = "\n".join(lines).strip()
            if not text:
                extra = chunks[index + 1][0] if index + 1 < len(chunks) else start  # the '---' that makes it empty
                self.report(file, extra, "an empty part: remove this extra '---' (a part is the text between two "
                            "'---' lines)")
                ok = False
                continue
            parts.extend(split_part(text))
        return tuple(parts) if ok else None


def _front_matter_end(lines: list[str]) -> int | None:
    """The index of the '---' that closes the front matter, or None if lesson text starts before one does."""
    for index in range(1, len(lines)):
        line = lines[index]
        if line.strip() == "---":
            return index
        if line.strip() and not line[0].isspace() and not line.startswith("#") and ":" not in line:
            return None  # prose: the author never closed the front matter
    return None
