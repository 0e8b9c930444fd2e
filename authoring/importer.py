"""Import a checked course into the database: idempotent, all in the caller's transaction, progress kept.

Rows are matched by the author's ids (course, module, lesson and question ids), so a re-import updates them in place
and every learner's enrollment, lesson progress and review cards keep pointing at the same rows. What the author
removed is retired, never deleted; what comes back is restored. Nothing is written for what did not change, so
importing the same folder twice leaves every row as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from sqlalchemy import and_, exists, func, not_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from authoring import format as fmt
from bot.text import counted
from storage.courses import Course, Enrollment, Lesson, LessonProgress, Module, Question, accessible
from storage.models import utcnow

ADDED, CHANGED, MOVED, RETIRED, RESTORED = "added", "changed", "moved", "retired", "restored"


@dataclass(frozen=True, slots=True)
class Change:
    """One thing an import did: `action` (added, changed, moved, retired, restored) to a `what` named `slug`."""

    action: str
    what: str  # course | module | lesson | question
    slug: str

    def __str__(self) -> str:
        return f"{self.action} {self.what} {self.slug}"


@dataclass(frozen=True, slots=True)
class Displaced:
    """Learners whose current lesson (`Enrollment.current_lesson_id`) an import retired: `learners` of them at lesson
    `at`, who go on at lesson `goes_on_at` (None: they have done every live lesson, so their next step finishes the
    course). The import leaves their place as it is; they are moved when they next go on (/next, or their lesson at
    its hour: dialogs.lessons, `_current_lesson`)."""

    learners: int
    at: str
    goes_on_at: str | None

    def sentence(self, *, dry_run: bool = False) -> str:
        """"2 learners are at lesson X, which this import retires: they go on at Y, …"."""
        if self.goes_on_at is None:
            then = (f"they have done every live lesson, so their next step {'would finish' if dry_run else 'finishes'} "
                    "the course")
        else:
            then = (f"they {'would go' if dry_run else 'go'} on at {self.goes_on_at}, the first live lesson of the "
                    "course they have not done, from its start")
        return (f"{counted(self.learners, 'learner')} {'is' if self.learners == 1 else 'are'} at lesson {self.at}, "
                f"which this import {'would retire' if dry_run else 'retires'}: {then}.")


class ImportRefused(Exception):
    """An import that would do what the author did not ask for; nothing was written. The message says why and what
    to do."""


@dataclass
class ImportReport:
    course: str
    created: bool = False
    changes: list[Change] = field(default_factory=list)
    modules: int = 0
    lessons: int = 0
    questions: int = 0
    source: str = ""  # the folder imported from
    moved_from: str | None = None  # the folder the course was imported from before, when `source` is another
    # When the import made a paid course's free part smaller (a free course turned paid, a shorter preview): how many
    # enrolled learners are now past the preview without an entitlement, so they cannot go on. None otherwise.
    locked_out: int | None = None
    free_preview_lessons: int = 0
    displaced: list[Displaced] = field(default_factory=list)  # learners at a lesson this import retired

    def note(self, action: str, what: str, slug: str) -> None:
        self.changes.append(Change(action, what, slug))

    @property
    def unchanged(self) -> bool:
        return not self.created and not self.changes and self.moved_from is None

    def summary(self, *, dry_run: bool = False) -> str:
        """What the import did, or (`dry_run`) what it would do."""
        size = (f"{counted(self.modules, 'module')}, {counted(self.lessons, 'lesson')}, "
                f"{counted(self.questions, 'question')}")
        if self.created:  # one line, not every module, lesson and question added
            return (f"Importing would add new course {self.course}: {size}." if dry_run
                    else f"Imported new course {self.course}: {size}.")
        if self.unchanged:
            return f"Course {self.course} is up to date: nothing {'would change' if dry_run else 'changed'} ({size})."
        lines = [f"{'Importing would update' if dry_run else 'Updated'} course {self.course} ({size}):"]
        lines += [f"  {change}" for change in self.changes]
        if self.moved_from is not None:
            lines.append(f"  moved to folder {self.source} (from {self.moved_from})")
        lines += [displaced.sentence(dry_run=dry_run) for displaced in self.displaced]
        if self.locked_out == 0:
            lines.append(f"No enrolled learner {'would be' if dry_run else 'is'} past the free preview.")
        elif self.locked_out is not None:
            preview = (f"the first {counted(self.free_preview_lessons, 'lesson')}" if self.free_preview_lessons
                       else "none of its lessons")
            verb = ("is" if self.locked_out == 1 else "are") if not dry_run else "would be"
            lines.append(f"{counted(self.locked_out, 'enrolled learner')} {verb} past the free preview ({preview}) "
                         "without an entitlement: they cannot go on until they buy the course or are granted it.")
        return "\n".join(lines)


def content_hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


async def import_course(session: AsyncSession, course: fmt.Course, *, now: datetime | None = None,
                        same_folder_only: bool = False) -> ImportReport:
    """Bring the database in line with `course` (already checked by `authoring.format.load_course`).

    Runs inside the caller's transaction: on any error nothing of it is kept. On PostgreSQL the course row is locked
    first, so two imports of one course run one after the other. With `same_folder_only` (the command line, unless
    the author passes --replace), a course with this id last imported from another folder is not replaced:
    `ImportRefused` is raised before anything is written.
    """
    now = now or utcnow()
    report = ImportReport(course.id, modules=len(course.modules), lessons=len(course.lessons),
                          questions=len(course.questions), free_preview_lessons=course.free_preview_lessons)
    row = await session.scalar(select(Course).where(Course.slug == course.id).with_for_update())
    values = _course_values(course)
    report.source = str(values["source"])
    tightened = False
    if row is None:
        row = Course(slug=course.id, created_at=now, imported_at=now, **values)
        session.add(row)
        await session.flush()
        report.created = True
    else:
        report.moved_from = _other_folder(row.source, course.folder)
        if report.moved_from is not None and same_folder_only and _still_holds(report.moved_from, course.id):
            raise ImportRefused(
                f"course {course.id} was imported from {report.moved_from}, not from {report.source}: importing "
                "this folder would replace that course, and retire its lessons this folder does not have. If this "
                "folder is where the course lives now, import it again with --replace; if it is another course, "
                f"give it an id of its own in its {fmt.COURSE_FILE}."
            )
        if any(getattr(row, name) != value for name, value in values.items() if name not in _NOT_DESCRIPTION):
            report.note(CHANGED, "course", course.id)
        # the lessons open to everyone are fewer now: a free course turned paid, or a paid one's preview shortened
        tightened = course.access == fmt.PAID and (
            row.access != fmt.PAID or course.free_preview_lessons < row.free_preview_lessons)
        _assign(row, values)

    modules = await _import_modules(session, row.id, course.modules, report)
    lessons = await _import_lessons(session, row.id, course, modules, report, now)
    await _import_questions(session, row.id, course, lessons, report)
    retired = [change.slug for change in report.changes if change.action == RETIRED and change.what == "lesson"]
    if retired:
        report.displaced = await _learners_at_retired(session, row.id, retired)
    if tightened or _lessons_pushed_on(course, report):
        report.locked_out = await _past_the_preview(session, row.id, now)
    if report.changes or report.moved_from is not None:
        row.imported_at = now
    return report


def _lessons_pushed_on(course: fmt.Course, report: ImportReport) -> bool:
    """Whether a paid course's lessons were added or moved by a re-import: a lesson a learner is at may have moved
    past the free preview (a lesson put before it), as when the preview is shortened."""
    return (not report.created and course.access == fmt.PAID
            and any(change.what == "lesson" and change.action in (ADDED, MOVED) for change in report.changes))


# Course columns that are not its own description: the hash follows every lesson, the folder is where it came from.
_NOT_DESCRIPTION = ("content_hash", "source")


def _other_folder(stored: str, folder: Path) -> str | None:
    """The folder a course was last imported from (`stored`), when it is not `folder`; None when it is, or when it
    was not recorded. A folder recorded relative (by an older import) is read from the current folder."""
    if not stored or Path(stored).resolve() == folder.resolve():
        return None
    return stored


def _still_holds(folder: str, course_id: str) -> bool:
    """Whether `folder` still holds the course `course_id` (its course.yaml names that id): two folders then claim one
    course. A folder that is gone, or holds another course now, is one the course moved from (a checkout moved or
    renamed with its database, a copy put elsewhere): importing from the new place is no replacement."""
    try:
        data = yaml.safe_load((Path(folder) / fmt.COURSE_FILE).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and str(data.get("id")) == course_id


async def _past_the_preview(session: AsyncSession, course_id: int, now: datetime) -> int:
    """How many learners enrolled in the course are at a lesson they may not take (`storage.courses.accessible`):
    past a paid course's free preview, without an entitlement in force. One query."""
    count = await session.scalar(
        select(func.count())
        .select_from(Enrollment)
        .join(Course, Course.id == Enrollment.course_id)
        .join(Lesson, Lesson.id == Enrollment.current_lesson_id)
        .where(Enrollment.course_id == course_id, not_(accessible(Enrollment.user_id, Course, Lesson.position, now)))
    )
    return count or 0


async def _learners_at_retired(session: AsyncSession, course_id: int, retired: list[str]) -> list[Displaced]:
    """How many learners are at each of the `retired` lessons (slugs), by the lesson each goes on at: as
    dialogs.lessons moves them when they next go on, the first live lesson of the course they have not completed
    (lessons are flushed: live positions are the new ones). One query."""
    current, following, other = aliased(Lesson), aliased(Lesson), aliased(Lesson)
    completed = (exists().where(LessonProgress.user_id == Enrollment.user_id, LessonProgress.lesson_id == other.id,
                                LessonProgress.completed_at.is_not(None))
                 .correlate_except(LessonProgress))  # the learner's, not anyone's
    first_to_do = (select(func.min(other.position))
                   .where(other.course_id == course_id, other.retired.is_(False), not_(completed))
                   .correlate(Enrollment).scalar_subquery())
    rows = await session.execute(
        select(current.slug, following.slug, func.count())
        .select_from(Enrollment)
        .join(current, current.id == Enrollment.current_lesson_id)
        .outerjoin(following, and_(following.course_id == course_id, following.retired.is_(False),
                                   following.position == first_to_do))
        .where(Enrollment.course_id == course_id, current.slug.in_(retired))
        .group_by(current.slug, following.slug)
    )
    order = {slug: index for index, slug in enumerate(retired)}
    found = [Displaced(count, at, goes_on_at) for at, goes_on_at, count in rows]
    return sorted(found, key=lambda d: (order[d.at], d.goes_on_at is None, -d.learners, d.goes_on_at or ""))


def _course_values(course: fmt.Course) -> dict[str, object]:
    return dict(
        title=course.title,
        description=course.description,
        language=course.language,
        access=course.access,
        price_minor=course.price.minor_units if course.price else None,
        currency=course.price.currency if course.price else None,
        price_period=course.price.period if course.price else None,
        free_preview_lessons=course.free_preview_lessons,
        pass_mark=course.pass_mark,
        source=str(course.folder.resolve()),
        content_hash=content_hash(_course_content(course)),
    )


def _course_content(course: fmt.Course) -> dict[str, object]:
    """Everything the author wrote, for the course's hash (the folder it came from is not content)."""
    return {
        "course": [course.id, course.title, course.description, course.language, course.access,
                   str(course.price.amount) if course.price else None, course.price.currency if course.price else None,
                   *([course.price.period] if course.price and course.price.period else []),
                   course.free_preview_lessons, *([course.pass_mark] if course.pass_mark is not None else [])],
        "modules": [[m.id, m.title, [lesson.id for lesson in m.lessons]] for m in course.modules],
        "lessons": [_lesson_content(lesson) for lesson in course.lessons],
        "questions": [_question_content(q) for q in course.questions],
    }


def _lesson_content(lesson: fmt.Lesson) -> list[object]:
    return [lesson.title, lesson.minutes, list(lesson.parts)]


def _question_content(question: fmt.Question) -> list[object]:
    return [question.kind, question.prompt, list(question.choices), question.correct_choice, question.is_true,
            list(question.accepted_answers), question.explanation]


async def _import_modules(session: AsyncSession, course_id: int, modules: Sequence[fmt.Module],
                          report: ImportReport) -> dict[str, Module]:
    existing = {m.slug: m for m in await session.scalars(select(Module).where(Module.course_id == course_id))}
    kept: dict[str, Module] = {}
    for position, module in enumerate(modules, start=1):
        row = existing.get(module.id)
        if row is None:
            row = Module(course_id=course_id, slug=module.id, title=module.title, position=position, retired=False)
            session.add(row)
            report.note(ADDED, "module", module.id)
        else:
            _revise(row, report, "module", module.id, content={"title": module.title}, place={"position": position})
        kept[module.id] = row
    _retire(existing, kept, report, "module")
    await session.flush()
    return kept


async def _import_lessons(session: AsyncSession, course_id: int, course: fmt.Course, modules: dict[str, Module],
                          report: ImportReport, now: datetime) -> dict[str, Lesson]:
    existing = {row.slug: row for row in await session.scalars(select(Lesson).where(Lesson.course_id == course_id))}
    kept: dict[str, Lesson] = {}
    position = 0
    for module in course.modules:
        for lesson in module.lessons:
            position += 1
            content = {"title": lesson.title, "minutes": lesson.minutes, "parts": list(lesson.parts),
                       "content_hash": content_hash(_lesson_content(lesson))}
            place = {"position": position, "module_id": modules[module.id].id}
            row = existing.get(lesson.id)
            if row is None:
                row = Lesson(course_id=course_id, slug=lesson.id, source_file=lesson.file, retired=False,
                             updated_at=now, **content, **place)
                session.add(row)
                report.note(ADDED, "lesson", lesson.id)
            else:
                before = len(row.parts)
                if _revise(row, report, "lesson", lesson.id, content=content, place=place):
                    row.updated_at = now
                    if len(row.parts) < before:
                        await _keep_learners_in_range(session, row, before=before)
                if row.source_file != lesson.file:
                    row.source_file = lesson.file
            kept[lesson.id] = row
    _retire(existing, kept, report, "lesson")
    await session.flush()
    return kept


async def _keep_learners_in_range(session: AsyncSession, lesson: Lesson, *, before: int) -> None:
    """A lesson that now has fewer parts (`before` it had): a learner who had read them all goes on to its quiz, one
    part-way through past its new end continues from its last part (`current_part`: the parts already sent)."""
    parts = len(lesson.parts)
    await session.execute(
        update(Enrollment)
        .where(Enrollment.current_lesson_id == lesson.id, Enrollment.current_part >= before)
        .values(current_part=parts)
    )
    await session.execute(
        update(Enrollment)
        .where(Enrollment.current_lesson_id == lesson.id, Enrollment.current_part > parts)
        .values(current_part=max(parts - 1, 0))
    )


async def _import_questions(session: AsyncSession, course_id: int, course: fmt.Course, lessons: dict[str, Lesson],
                            report: ImportReport) -> None:
    existing = {q.slug: q for q in await session.scalars(select(Question).where(Question.course_id == course_id))}
    kept: dict[str, Question] = {}
    for lesson in course.lessons:
        for position, question in enumerate(lesson.questions, start=1):
            content = {
                "kind": question.kind,
                "prompt": question.prompt,
                "choices": list(question.choices) if question.kind == fmt.CHOICE else None,
                "correct_choice": question.correct_choice,
                "is_true": question.is_true,
                "accepted_answers": list(question.accepted_answers) if question.kind == fmt.SHORT_TEXT else None,
                "explanation": question.explanation,
                "content_hash": content_hash(_question_content(question)),
            }
            place = {"lesson_id": lessons[lesson.id].id, "position": position}
            row = existing.get(question.id)
            if row is None:
                row = Question(course_id=course_id, slug=question.id, retired=False, **content, **place)
                session.add(row)
                report.note(ADDED, "question", question.id)
            else:
                _revise(row, report, "question", question.id, content=content, place=place)
            kept[question.id] = row
    _retire(existing, kept, report, "question")
    await session.flush()


def _revise(row: Module | Lesson | Question, report: ImportReport, what: str, slug: str, *,
            content: Mapping[str, object], place: Mapping[str, object]) -> bool:
    """Update a matched row; note whether it came back, changed, or moved. True if its content changed."""
    if row.retired:
        row.retired = False
        report.note(RESTORED, what, slug)
    changed = any(getattr(row, name) != value for name, value in content.items())
    if changed:
        report.note(CHANGED, what, slug)
        _assign(row, content)
    if any(getattr(row, name) != value for name, value in place.items()):
        report.note(MOVED, what, slug)
        _assign(row, place)
    return changed


def _retire(existing: dict[str, Module] | dict[str, Lesson] | dict[str, Question], kept: Mapping[str, object],
            report: ImportReport, what: str) -> None:
    for slug, row in existing.items():
        if slug not in kept and not row.retired:
            row.retired = True
            report.note(RETIRED, what, slug)


def _assign(row: object, values: Mapping[str, object]) -> None:
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
