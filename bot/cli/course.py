"""`lessonbot course validate|import|list|publish|unpublish`: check a course folder, bring it into the database, see
what is there, offer it or stop offering it.

Imports stay inside the functions so `lessonbot --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.admin import audit
from bot.cli.database import database
from bot.text import counted

if TYPE_CHECKING:
    from authoring.format import Course, Problem
    from bot.config import Settings
    from storage.db import Database


log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    course = subparsers.add_parser(
        "course", help="courses: validate a course folder, import it, list, publish or unpublish courses")
    actions = course.add_subparsers(dest="course_action", required=True, metavar="ACTION")

    validate = actions.add_parser("validate", help="check a course folder and list every problem as file:line")
    validate.add_argument("path", nargs="?", type=Path, help="the course folder (default: SAMPLE_COURSE_DIR)")
    validate.set_defaults(func=cmd_validate)

    load = actions.add_parser("import", help="check a course folder, then add or update it (learners keep progress)")
    load.add_argument("path", nargs="?", type=Path, help="the course folder (default: SAMPLE_COURSE_DIR)")
    load.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    load.add_argument("--replace", action="store_true",
                      help="import over a course with the same id that was last imported from another folder")
    load.set_defaults(func=cmd_import, uses_database=True)

    listing = actions.add_parser("list", help="the courses in the database")
    listing.set_defaults(func=cmd_list, uses_database=True)

    for action, offered, text in (
        ("unpublish", False, "stop offering a course to anyone not in it yet (those in it keep it)"),
        ("publish", True, "offer an unpublished course again"),
    ):
        publishing = actions.add_parser(action, help=text)
        publishing.add_argument("course", metavar="COURSE", help="the course's id, as `lessonbot course list` shows")
        publishing.set_defaults(func=cmd_publish, published=offered, uses_database=True)


def _folder_problem(folder: Path, settings: Settings, args: argparse.Namespace) -> str | None:
    """Why `folder` (PATH, or without it the SAMPLE_COURSE_DIR setting) cannot be a course folder, or None."""
    if folder.is_dir():
        return None
    problem = "does not exist" if not folder.exists() else "is not a folder"
    if args.path is not None:
        return f"{folder} {problem}: name the course folder, the one that holds course.yaml."
    setting = ("the SAMPLE_COURSE_DIR setting" if "sample_course_dir" in settings.model_fields_set
               else "the SAMPLE_COURSE_DIR setting's default")
    return (f"{folder} {problem}: no PATH was given, so {setting} was used (from {Path.cwd()}); pass the course "
            f"folder: lessonbot course {args.course_action} PATH.")


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    from authoring.format import check_course

    folder = args.path or settings.sample_course_dir
    if unusable := _folder_problem(folder, settings, args):
        print(unusable, file=sys.stderr)
        return 1
    course, problems = check_course(folder)
    if problems or course is None:
        _print_problems(problems)
        return 1
    _print_notes(course)
    access = "free" if course.price is None else f"paid, {course.price.amount} {course.price.currency}"
    preview = f", first {course.free_preview_lessons} free" if course.free_preview_lessons else ""
    print(f"{folder}: course {course.id} is valid: {counted(len(course.modules), 'module')}, "
          f"{counted(len(course.lessons), 'lesson')}, {counted(len(course.questions), 'question')} "
          f"({course.language}, {access}{preview}).")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from authoring.format import check_course

    folder = args.path or settings.sample_course_dir
    if unusable := _folder_problem(folder, settings, args):
        print(f"Nothing was imported: {unusable}", file=sys.stderr)
        return 1
    course, problems = check_course(folder)
    if problems or course is None:
        _print_problems(problems)
        print("Nothing was imported: fix the problems above and run the import again.", file=sys.stderr)
        return 1

    # The question answerer searches what is imported: a store it cannot use (a Chroma server down, the model's files
    # missing, vectors of another model) is found before anything is written.
    if not args.dry_run and (unusable := _store_problem(settings)):
        print(f"Nothing was imported: the course cannot be indexed for questions. {unusable}", file=sys.stderr)
        return 1
    _print_notes(course)  # the course is about to be imported (or a dry run shown): what will read badly in it

    async def run() -> int:
        from authoring.importer import ImportRefused, import_course

        async with database(settings, pool_size=1) as db:
            try:
                async with db.sessions() as session, session.begin():
                    report = await import_course(session, course, same_folder_only=not args.replace)
                    if args.dry_run:
                        await session.rollback()
            except ImportRefused as refused:
                print(f"{'Dry run: the import would be refused' if args.dry_run else 'Nothing was imported'}: "
                      f"{refused}", file=sys.stderr)
                return 1
            print(("Dry run, nothing was written. " if args.dry_run else "") + report.summary(dry_run=args.dry_run))
            if not args.dry_run and (closed := await close_withdrawn_pages(settings, db, course.id)):
                print(f"Closed {counted(closed, 'payment page')} that sold the course as it is no longer sold (at "
                      "another price, or to people not taking it once unpublished).")
        if args.dry_run:
            return 0
        # Bring the index up to date (only changes cost).
        from authoring.indexing import ingest_course
        from bot.config import knowledge_settings

        try:
            ingested = await asyncio.to_thread(ingest_course, course, knowledge_settings(settings))
        except Exception as exc:  # the course itself is imported; only the search index lags behind
            log.debug("indexing the course for questions failed", exc_info=True)  # (LOG_LEVEL=DEBUG: where)
            print(f"Question answering: not updated: {_one_line(exc)} The course itself was imported (learners can "
                  f"take its lessons); once that is fixed, run `lessonbot course import {shlex.quote(str(folder))}` "
                  "again to index it (learners keep their progress).", file=sys.stderr)
            return 1
        print(f"Question answering: {ingested}")
        return 0

    return asyncio.run(run())


async def close_withdrawn_pages(settings: Settings, db: Database, slug: str) -> int:
    """Close the course's Stripe payment pages still open that sell it as it is no longer sold (unpublished, or
    priced otherwise: `dialogs.payments.withdrawn_checkouts`), as `/admin unpublish` does; how many were closed."""
    from sqlalchemy import select

    from bot.payments import stripe_checkout
    from dialogs.payments import PaymentDesk, checkouts_closed, close_checkouts, withdrawn_checkouts
    from storage.courses import Course
    from storage.models import utcnow

    checkout = stripe_checkout(settings)
    if checkout is None:
        return 0
    async with db.transaction() as session:
        course_id = await session.scalar(select(Course.id).where(Course.slug == slug))
        checkouts = await withdrawn_checkouts(session, course_id) if course_id is not None else []
    if not checkouts:
        return 0
    closed = await close_checkouts(PaymentDesk(checkout=checkout), checkouts)
    async with db.transaction() as session:
        await checkouts_closed(session, closed, utcnow())
    return len(closed)


def _store_problem(settings: Settings) -> str | None:
    """Why the knowledge store cannot be opened with these settings (its exception's own message), or None."""
    from bot.config import knowledge_settings
    from knowledge.embeddings import EmbeddingsNotConfigured, ModelFilesMissing
    from knowledge.store import EmbeddingModelMismatch, StoreUnavailable, open_store

    try:
        open_store(knowledge_settings(settings))
    except (EmbeddingModelMismatch, StoreUnavailable, ModelFilesMissing, EmbeddingsNotConfigured) as exc:
        return _one_line(exc)
    return None


def _one_line(exc: Exception) -> str:
    """An exception's message as one sentence: Lessonbot's own say what to do; another's is named by its type."""
    from knowledge.embeddings import EmbeddingsNotConfigured, ModelFilesMissing
    from knowledge.store import EmbeddingModelMismatch, StoreUnavailable

    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if not isinstance(exc, EmbeddingModelMismatch | StoreUnavailable | ModelFilesMissing | EmbeddingsNotConfigured):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first if first.endswith((".", "!", "?")) else f"{first}."


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> int:
        from sqlalchemy import func, select

        from authoring.format import format_price
        from storage.courses import Course, Enrollment, Lesson, Question

        async with database(settings, pool_size=1) as db, db.sessions() as session:
            def live(model: type[Lesson] | type[Question]):
                return (select(func.count()).where(model.course_id == Course.id, model.retired.is_(False))
                        .scalar_subquery())

            learners = select(func.count()).where(Enrollment.course_id == Course.id).scalar_subquery()
            rows = (await session.execute(
                select(Course, live(Lesson), live(Question), learners).order_by(Course.slug)
            )).all()
        if not rows:
            print("No courses yet. Add one with: lessonbot course import PATH")
            return 0
        for course, lessons, questions, enrolled in rows:
            access = "free" if course.is_free else (
                f"paid {format_price(course.price_minor or 0, course.currency or '')}"
                f"{' a ' + course.price_period if course.price_period else ''}, "
                f"first {course.free_preview_lessons} free")
            print(f"{course.slug}\t{course.title}\t{course.language}\t{access}\t{counted(lessons, 'lesson')}\t"
                  f"{counted(questions, 'question')}\t{counted(enrolled, 'learner')}\t"
                  f"imported {course.imported_at:%Y-%m-%d %H:%M}{'' if course.published else chr(9) + 'unpublished'}")
        return 0

    return asyncio.run(run())


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    """`course publish|unpublish COURSE`: whether /courses, onboarding, /buy and a team's set-up offer the course;
    audited as the operator's, as `/admin publish|unpublish` is in chat."""
    async def run() -> int:
        from sqlalchemy import func, select

        from storage.courses import Course, Enrollment, publish

        async with database(settings, pool_size=1) as db:
            async with db.transaction() as session:
                course = await publish(session, args.course.lower(), args.published)
                audit(session, f"course {args.course_action}", args.course, "invalid" if course is None else "ok")
                if course is None:
                    slugs = ", ".join(await session.scalars(select(Course.slug).order_by(Course.slug))) or "none yet"
                    print(f"There is no course {args.course!r}. Courses: {slugs}.", file=sys.stderr)
                    return 1
                enrolled = await session.scalar(select(func.count()).where(Enrollment.course_id == course.id)) or 0
            if args.published:
                print(f"Course {course.slug} is published: /courses, onboarding and /buy offer it.")
                return 0
            print(f"Course {course.slug} is unpublished: nobody new is offered it; the "
                  f"{counted(enrolled, 'learner')} in it keep it. Undo: lessonbot course publish {course.slug}")
            closed = await close_withdrawn_pages(settings, db, course.slug)
        if closed:
            print(f"Closed {counted(closed, 'payment page')} opened by people not taking it.")
        return 0

    return asyncio.run(run())


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(problems)
    print(f"{counted(count, 'problem')} found.", file=sys.stderr)


def _print_notes(course: Course) -> None:
    """Where the course will read badly on a platform (bot.cli.course_notes), then how many: they block nothing."""
    from bot.cli.course_notes import course_notes

    notes = course_notes(course)
    for note in notes:
        print(note)
    if notes:
        print(f"{counted(len(notes), 'note')}: they do not stop an import.")
