"""Importing courses: idempotent, all or nothing, and a re-import of a changed course keeps every learner's progress."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import pytest
from sqlalchemy import select

from authoring.format import load_course
from authoring.importer import ADDED, CHANGED, MOVED, RESTORED, RETIRED, Change, Displaced, import_course
from bot.cli import main
from storage.courses import (
    Course,
    Enrollment,
    Entitlement,
    Lesson,
    LessonProgress,
    Module,
    Question,
    QuestionCard,
    course_lessons,
    lesson_questions,
)
from storage.db import Database
from storage.models import User, utcnow
from tests.authoring.course_files import SAMPLE, copy_course, edit, write_tiny_course
from tests.dialogs.learning_support import Learning, answer_until, learning_bot, onboard  # noqa: F401

COURSE_TABLES = (Course, Module, Lesson, Question, Enrollment, LessonProgress, QuestionCard, Entitlement)


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    yield database
    await database.dispose()


async def load(db: Database, folder):
    async with db.transaction() as session:
        return await import_course(session, load_course(folder))


async def cli(*argv: str) -> int:
    """`lessonbot …` as typed; in a thread, since each command runs its own event loop."""
    return await asyncio.to_thread(main, list(argv))


def after_notes(out: str) -> list[str]:
    """A course command's output lines after the notes on the course it prints first (test_course_notes.py)."""
    lines = out.splitlines()
    ends = next((index for index, line in enumerate(lines) if line.endswith(": they do not stop an import.")), -1)
    return lines[ends + 1:]


async def snapshot(db: Database) -> dict[str, list[tuple]]:
    """Every row of the course tables, every column, in id order."""
    rows = {}
    async with db.sessions() as session:
        for model in COURSE_TABLES:
            columns = [column.key for column in model.__table__.columns]
            found = await session.scalars(select(model).order_by(model.id))
            rows[model.__tablename__] = [tuple(getattr(row, c) for c in columns) for row in found]
    return rows


async def test_sample_course_imports_in_course_order(db):
    report = await load(db, SAMPLE)
    assert report.created and report.summary() == "Imported new course spot-phishing: 2 modules, 5 lessons, " \
                                                  "14 questions."
    async with db.sessions() as session:
        course = await session.scalar(select(Course).where(Course.slug == "spot-phishing"))
        lessons = await course_lessons(session, course.id)
        assert [lesson.position for lesson in lessons] == [1, 2, 3, 4, 5]
        assert lessons[0].slug == "what-phishing-wants" and lessons[0].minutes == 3
        assert lessons[2].parts == list(load_course(SAMPLE).lessons[2].parts)
        questions = await lesson_questions(session, lessons[0].id)
        assert [(q.slug, q.kind) for q in questions] == [
            ("parcel-fee", "choice"), ("act-at-once", "true_false"), ("smishing-name", "text")
        ]
        assert questions[0].choices == ["Authority", "Urgency", "Reward"] and questions[0].correct_choice == 1
        assert questions[1].is_true is False and questions[1].choices is None
        assert questions[2].accepted_answers == ["smishing", "SMS phishing", "text message phishing"]
        assert course.access == "free" and course.price_minor is None


async def test_importing_twice_changes_no_row(db):
    await load(db, SAMPLE)
    first = await snapshot(db)
    report = await load(db, SAMPLE)
    assert report.unchanged and "nothing changed" in report.summary()
    assert await snapshot(db) == first
    assert len(first["lessons"]) == 5 and len(first["questions"]) == 14


async def test_paid_course_keeps_price_in_minor_units(db, tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "course.yaml", "access: free\n", "access: paid\nprice:\n  amount: 12.5\n  currency: EUR\n"
                                                   "free_preview_lessons: 1\n")
    await load(db, folder)
    async with db.sessions() as session:
        course = await session.scalar(select(Course))
    assert (course.access, course.price_minor, course.currency, course.free_preview_lessons) == ("paid", 1250, "EUR", 1)


async def _learner_in_the_middle(db: Database) -> dict[str, int]:
    """A learner who finished lesson 1, answered its questions, and is half-way through lesson 2."""
    async with db.transaction() as session:
        course = await session.scalar(select(Course).where(Course.slug == "spot-phishing"))
        lessons = {lesson.slug: lesson for lesson in await course_lessons(session, course.id)}
        first, second = lessons["what-phishing-wants"], lessons["check-the-sender"]
        user = User(display_name="Ann")
        session.add(user)
        await session.flush()
        session.add(Enrollment(user_id=user.id, course_id=course.id, current_lesson_id=second.id, current_part=2))
        session.add(LessonProgress(user_id=user.id, lesson_id=first.id, parts_seen=3, completed_at=utcnow(),
                                   score=1.0))
        session.add(LessonProgress(user_id=user.id, lesson_id=second.id, parts_seen=2))
        for question in await lesson_questions(session, second.id):
            session.add(QuestionCard(user_id=user.id, question_id=question.id, card={"state": 2}, attempts=1,
                                     due=utcnow() + timedelta(days=3), last_rating=3))
        return {"user": user.id, "first": first.id, "second": second.id, "third": lessons["read-a-link"].id}


async def test_reimport_of_an_edited_reordered_course_keeps_progress(db, tmp_path):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    ids = await _learner_in_the_middle(db)
    before = await snapshot(db)

    # edit lesson 1's text, move lesson 3 before lesson 2, remove a question of lesson 2, retitle a module
    edit(folder / "lessons" / "01-what-phishing-wants.md", "So the first habit", "The first habit")
    edit(folder / "course.yaml", "      - lessons/02-check-the-sender.md\n      - lessons/03-read-a-link.md\n",
         "      - lessons/03-read-a-link.md\n      - lessons/02-check-the-sender.md\n")
    edit(folder / "course.yaml", "title: Act safely", "title: Act safely, fast")
    lesson_two = folder / "lessons" / "02-check-the-sender.md"
    lesson_two.write_text(lesson_two.read_text().split("### lookalike-sender")[0])
    report = await load(db, folder)

    assert set(report.changes) == {
        Change(CHANGED, "lesson", "what-phishing-wants"),
        Change(MOVED, "lesson", "read-a-link"),
        Change(MOVED, "lesson", "check-the-sender"),
        Change(RETIRED, "question", "lookalike-sender"),
        Change(CHANGED, "module", "act-safely"),
    }
    after = await snapshot(db)
    # the learner's rows are untouched, and still point at the same lessons and questions
    for table in ("enrollments", "lesson_progress", "question_cards"):
        assert after[table] == before[table]
    async with db.sessions() as session:
        lessons = {lesson.slug: lesson for lesson in await session.scalars(select(Lesson))}
        assert lessons["what-phishing-wants"].id == ids["first"]
        assert (lessons["read-a-link"].position, lessons["check-the-sender"].position) == (2, 3)
        retired = await session.scalar(select(Question).where(Question.slug == "lookalike-sender"))
        assert retired.retired and await session.scalar(
            select(QuestionCard).where(QuestionCard.question_id == retired.id)) is not None
        assert [q.slug for q in await lesson_questions(session, ids["second"])] == ["display-name"]


async def test_removed_lesson_is_retired_and_comes_back_with_its_progress(db, tmp_path):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    ids = await _learner_in_the_middle(db)

    edit(folder / "course.yaml", "      - lessons/02-check-the-sender.md\n", "")
    (folder / "lessons" / "02-check-the-sender.md").rename(folder / "lessons" / "_02-check-the-sender.md")
    report = await load(db, folder)
    assert Change(RETIRED, "lesson", "check-the-sender") in report.changes
    assert {Change(RETIRED, "question", "display-name"), Change(MOVED, "lesson", "read-a-link")} <= set(report.changes)
    async with db.sessions() as session:
        course = await session.scalar(select(Course))
        assert [lesson.slug for lesson in await course_lessons(session, course.id)] == [
            "what-phishing-wants", "read-a-link", "odd-requests", "if-you-clicked"
        ]
        progress = await session.scalar(select(LessonProgress).where(LessonProgress.lesson_id == ids["second"]))
        enrollment = await session.scalar(select(Enrollment))
        assert progress.parts_seen == 2 and enrollment.current_lesson_id == ids["second"]

    (folder / "lessons" / "_02-check-the-sender.md").rename(folder / "lessons" / "02-check-the-sender.md")
    edit(folder / "course.yaml", "      - lessons/03-read-a-link.md\n",
         "      - lessons/02-check-the-sender.md\n      - lessons/03-read-a-link.md\n")
    report = await load(db, folder)
    assert Change(RESTORED, "lesson", "check-the-sender") in report.changes
    async with db.sessions() as session:
        restored = await session.scalar(select(Lesson).where(Lesson.slug == "check-the-sender"))
        assert restored.id == ids["second"] and not restored.retired and restored.position == 2


async def test_shorter_lesson_keeps_learners_on_a_part_that_exists(db, tmp_path):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    ids = await _learner_in_the_middle(db)  # on part index 2 of lesson 2, which has three parts
    lesson_two = folder / "lessons" / "02-check-the-sender.md"
    text = lesson_two.read_text()
    body, quiz = text.split("## Quiz")
    lesson_two.write_text(body.rsplit("\n---\n", 1)[0] + "\n\n## Quiz" + quiz)  # drop its last part
    report = await load(db, folder)
    assert Change(CHANGED, "lesson", "check-the-sender") in report.changes
    async with db.sessions() as session:
        lesson = await session.get(Lesson, ids["second"])
        enrollment = await session.scalar(select(Enrollment))
    # two parts sent of three; the lesson now has two: both read, its quiz comes next (part 2 is "past the last")
    assert len(lesson.parts) == 2 and enrollment.current_part == 2


async def test_lesson_moved_to_another_module(db, tmp_path):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    edit(folder / "course.yaml", "      - lessons/03-read-a-link.md\n", "")
    edit(folder / "course.yaml", "      - lessons/04-odd-requests.md\n",
         "      - lessons/03-read-a-link.md\n      - lessons/04-odd-requests.md\n")
    report = await load(db, folder)
    assert report.changes == [Change(MOVED, "lesson", "read-a-link")]  # same course position, new module
    async with db.sessions() as session:
        lesson = await session.scalar(select(Lesson).where(Lesson.slug == "read-a-link"))
        module = await session.get(Module, lesson.module_id)
    assert module.slug == "act-safely" and lesson.position == 3


async def test_new_lesson_is_added(db, tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    await load(db, folder)
    (folder / "lessons" / "three.md").write_text("---\nid: three\ntitle: Three\n---\n\nNew.\n")
    edit(folder / "course.yaml", "      - lessons/two.md\n", "      - lessons/two.md\n      - lessons/three.md\n")
    report = await load(db, folder)
    assert report.changes == [Change(ADDED, "lesson", "three")]
    assert "added lesson three" in report.summary()


async def test_import_that_fails_validation_changes_nothing(db, database_url, tmp_path, monkeypatch, capsys):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    before = await snapshot(db)

    edit(folder / "course.yaml", "title: Read the signs", "title: Signs to read")  # a good change …
    edit(folder / "lessons" / "03-read-a-link.md", "Answer: false", "Answer: perhaps")  # … and a bad one
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await cli("course", "import", str(folder)) == 1
    errors = capsys.readouterr().err
    assert f"{folder / 'lessons' / '03-read-a-link.md'}:51: 'Answer: perhaps'" in errors
    assert "Nothing was imported" in errors
    assert await snapshot(db) == before


LESSON_ONE = "lessons/01-what-phishing-wants.md"
# Files that once validated and then lost questions, failed half-way through the import, or stored what learners
# cannot use: each is now one problem at its line, and the database keeps what it had.
REFUSED_EDITS = {
    "code block left open before the quiz": (
        (LESSON_ONE, "## Quiz\n", "For example:\n\n```\nFrom: security@kestre1bank.com\n\n## Quiz\n"),
        (LESSON_ONE, 33, "a ``` code block opened on line 33 is never closed")),
    "price past what payments take": (
        ("course.yaml", "access: free\n", "access: paid\nprice:\n  amount: 30000000\n  currency: EUR\n"),
        ("course.yaml", 11, "30000000 EUR is more than payments can take")),
    "price past a database integer": (
        ("course.yaml", "access: free\n", "access: paid\nprice:\n  amount: 99999999999999999999\n  currency: EUR\n"),
        ("course.yaml", 11, "is more than payments can take")),
    "nul in an explanation": ((LESSON_ONE, "The two-hour deadline", "The two-hour\x00 deadline"),
                              (LESSON_ONE, 41, "the control character U+0000")),
    "answer nobody can type": ((LESSON_ONE, "- smishing\n", "- smishing\n- !!!\n"),
                               (LESSON_ONE, 57, "learners cannot type it")),
}


@pytest.mark.parametrize("case", list(REFUSED_EDITS), ids=list(REFUSED_EDITS))
async def test_a_bad_reimport_is_one_problem_and_changes_nothing(db, database_url, tmp_path, monkeypatch, capsys,
                                                                 case):
    (file, old, new), (at, line, message) = REFUSED_EDITS[case]
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    before = await snapshot(db)

    edit(folder / file, old, new)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await cli("course", "import", str(folder)) == 1
    problem, *rest = capsys.readouterr().err.splitlines()
    assert problem.startswith(f"{folder / at}:{line}: ") and message in problem, problem
    assert rest == ["1 problem found.", "Nothing was imported: fix the problems above and run the import again."]
    assert await snapshot(db) == before


async def test_cli_import_reports_changes_and_list_shows_the_course(db, database_url, tmp_path, monkeypatch, capsys):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await cli("course", "import", "--dry-run", str(folder)) == 0
    assert after_notes(capsys.readouterr().out) == [
        "Dry run, nothing was written. Importing would add new course spot-phishing: 2 modules, 5 lessons, "
        "14 questions."
    ]
    assert await snapshot(db) == {model.__tablename__: [] for model in COURSE_TABLES}

    assert await cli("course", "import", str(folder)) == 0
    assert "Imported new course spot-phishing" in capsys.readouterr().out
    edit(folder / "lessons" / "05-if-you-clicked.md", "That is the course.", "That is the whole course.")
    assert await cli("course", "import", str(folder)) == 0
    *report, indexed = after_notes(capsys.readouterr().out)
    assert report == [
        "Updated course spot-phishing (2 modules, 5 lessons, 14 questions):",
        "  changed lesson if-you-clicked",
    ]
    assert indexed.startswith("Question answering: ")  # the index follows (its own tests: tests/knowledge)
    assert await cli("course", "list") == 0
    listed = capsys.readouterr().out
    assert listed.startswith("spot-phishing\tSpot the phish, five minutes a day\ten\tfree\t5 lessons\t14 questions")

    assert await cli("course", "unpublish", "spot-phishing") == 0
    assert capsys.readouterr().out == ("Course spot-phishing is unpublished: nobody new is offered it; the 0 learners "
                                       "in it keep it. Undo: lessonbot course publish spot-phishing\n")
    assert await cli("course", "import", str(folder)) == 0  # an import leaves it as it is
    capsys.readouterr()
    assert await cli("course", "list") == 0
    assert capsys.readouterr().out.rstrip("\n").endswith("\tunpublished")
    assert await cli("course", "publish", "spot-phishing") == 0
    assert capsys.readouterr().out.startswith("Course spot-phishing is published")
    assert await cli("course", "list") == 0
    assert "unpublished" not in capsys.readouterr().out
    assert await cli("course", "unpublish", "spot-phish") == 1
    assert capsys.readouterr().err == "There is no course 'spot-phish'. Courses: spot-phishing.\n"


async def test_cli_counts_read_as_english_one_module_one_learner(db, database_url, tmp_path, monkeypatch, capsys):
    folder = write_tiny_course(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await cli("course", "validate", str(folder)) == 0
    assert "course tiny is valid: 1 module, 2 lessons, " in capsys.readouterr().out
    assert await cli("course", "import", str(folder)) == 0
    assert "Imported new course tiny: 1 module, 2 lessons, " in capsys.readouterr().out
    async with db.transaction() as session:
        person = User(display_name="Pat")
        session.add(person)
        await session.flush()
        course = await session.scalar(select(Course).where(Course.slug == "tiny"))
        session.add(Enrollment(user_id=person.id, course_id=course.id))
    assert await cli("course", "list") == 0
    assert "\t2 lessons\t" in (listed := capsys.readouterr().out) and "\t1 learner\t" in listed


async def test_a_course_from_another_folder_with_the_same_id_is_not_replaced_unasked(db, database_url, tmp_path,
                                                                                    monkeypatch, capsys):
    first = copy_course(SAMPLE, tmp_path / "first")
    await load(db, first)
    before = await snapshot(db)
    other = copy_course(SAMPLE, tmp_path / "other")  # another course that kept the sample's id, one lesson shorter
    edit(other / "course.yaml", "      - lessons/05-if-you-clicked.md\n", "")
    (other / "lessons" / "05-if-you-clicked.md").unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)

    refusal = (f"course spot-phishing was imported from {first}, not from {other}: importing this folder would "
               "replace that course, and retire its lessons this folder does not have. If this folder is where the "
               "course lives now, import it again with --replace; if it is another course, give it an id of its own "
               "in its course.yaml.")
    assert await cli("course", "import", "other") == 1
    assert capsys.readouterr().err.splitlines() == [f"Nothing was imported: {refusal}"]
    assert await cli("course", "import", "--dry-run", "other") == 1
    assert capsys.readouterr().err.splitlines() == [f"Dry run: the import would be refused: {refusal}"]
    assert await snapshot(db) == before

    assert await cli("course", "import", "--dry-run", "first") == 0  # the same folder, named relative to here
    assert "is up to date: nothing would change" in capsys.readouterr().out
    assert await cli("course", "import", "--dry-run", "--replace", "other") == 0
    heading, *retired, moved = after_notes(capsys.readouterr().out)
    assert heading == ("Dry run, nothing was written. Importing would update course spot-phishing (2 modules, "
                       "4 lessons, 11 questions):")
    assert sorted(retired) == ["  retired lesson if-you-clicked", "  retired question report-anyway",
                               "  retired question scam-text-number", "  retired question typed-password"]
    assert moved == f"  moved to folder {other} (from {first})"
    assert await snapshot(db) == before

    # The first folder moved (a checkout renamed with its database): the course lives where it is now, unasked.
    first.rename(tmp_path / "renamed")
    assert await cli("course", "import", "renamed") == 0
    assert f"  moved to folder {tmp_path / 'renamed'} (from {first})" in capsys.readouterr().out


async def _learners_at(db: Database, places: dict[str, tuple[str, str | None]], *, part: int = 0,
                       done: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """Learners enrolled in the sample course, each at a lesson (by id, part `part`), with an entitlement (granted,
    revoked) or none, and the lessons they completed (`done`, by name)."""
    async with db.transaction() as session:
        course = await session.scalar(select(Course).where(Course.slug == "spot-phishing"))
        lessons = {lesson.slug: lesson.id for lesson in await course_lessons(session, course.id)}
        for name, (lesson, entitlement) in places.items():
            user = User(display_name=name)
            session.add(user)
            await session.flush()
            session.add(Enrollment(user_id=user.id, course_id=course.id, current_lesson_id=lessons[lesson],
                                   current_part=part))
            if entitlement is not None:
                session.add(Entitlement(user_id=user.id, course_id=course.id, source="grant", reference=name,
                                        revoked_at=utcnow() if entitlement == "revoked" else None))
            session.add_all(LessonProgress(user_id=user.id, lesson_id=lessons[slug], parts_seen=3,
                                           completed_at=utcnow()) for slug in (done or {}).get(name, ()))


async def test_a_reimport_that_shrinks_what_is_free_says_who_can_no_longer_go_on(db, database_url, tmp_path,
                                                                                 monkeypatch, capsys):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    paid = "access: paid\nprice:\n  amount: 9.90\n  currency: EUR\nfree_preview_lessons: 2\n"
    edit(folder / "course.yaml", "access: free\n", paid)  # no one is enrolled yet: no one is past it
    report = await load(db, folder)
    assert report.locked_out == 0 and report.summary().endswith("No enrolled learner is past the free preview.")
    edit(folder / "course.yaml", paid, "access: free\n")
    await load(db, folder)
    await _learners_at(db, {
        "Ann": ("read-a-link", None),  # lesson 3: past a preview of 2, nothing bought
        "Bob": ("read-a-link", "granted"),
        "Cy": ("check-the-sender", None),  # lesson 2: in the preview
        "Dee": ("odd-requests", "revoked"),
    })
    edit(folder / "course.yaml", "access: free\n",
         "access: paid\nprice:\n  amount: 9.90\n  currency: EUR\nfree_preview_lessons: 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await cli("course", "import", "--dry-run", str(folder)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "2 enrolled learners would be past the free preview (the first 2 lessons) without an entitlement: they "
        "cannot go on until they buy the course or are granted it.")

    report = await load(db, folder)
    assert report.locked_out == 2
    assert report.summary().splitlines() == [
        "Updated course spot-phishing (2 modules, 5 lessons, 14 questions):",
        "  changed course spot-phishing",
        "2 enrolled learners are past the free preview (the first 2 lessons) without an entitlement: they cannot go "
        "on until they buy the course or are granted it.",
    ]

    edit(folder / "course.yaml", "free_preview_lessons: 2\n", "free_preview_lessons: 0\n")
    report = await load(db, folder)
    assert report.locked_out == 3 and report.summary().endswith(
        "3 enrolled learners are past the free preview (none of its lessons) without an entitlement: they cannot go "
        "on until they buy the course or are granted it.")

    edit(folder / "course.yaml", "amount: 9.90", "amount: 12.90")  # a new price: what is free stays as it was
    report = await load(db, folder)
    assert report.locked_out is None and "free preview" not in report.summary()



async def test_a_reimport_that_moves_a_learners_lesson_out_of_the_free_preview_says_so(db, tmp_path):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    paid = "access: paid\nprice:\n  amount: 9.90\n  currency: EUR\nfree_preview_lessons: 2\n"
    edit(folder / "course.yaml", "access: free\n", paid)
    await load(db, folder)
    await _learners_at(db, {"Cy": ("check-the-sender", None)})  # lesson 2: free to try, half read
    last = "      - lessons/05-if-you-clicked.md\n"
    edit(folder / "course.yaml", last, "")  # the last lesson put first: Cy's is lesson 3 now, past the preview
    edit(folder / "course.yaml", "      - lessons/01-what-phishing-wants.md\n",
         "      - lessons/05-if-you-clicked.md\n      - lessons/01-what-phishing-wants.md\n")
    report = await load(db, folder)
    assert report.locked_out == 1, report.summary()
    assert report.summary().endswith(
        "1 enrolled learner is past the free preview (the first 2 lessons) without an entitlement: they cannot go "
        "on until they buy the course or are granted it.")

def _retire_lesson_two(folder) -> None:
    """The author drops the sample's lesson 2, check-the-sender (kept as a draft)."""
    edit(folder / "course.yaml", "      - lessons/02-check-the-sender.md\n", "")
    (folder / "lessons" / "02-check-the-sender.md").rename(folder / "lessons" / "_02-check-the-sender.md")


async def test_a_reimport_that_retires_where_learners_are_says_where_they_go_on(db, database_url, tmp_path,
                                                                                monkeypatch, capsys):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    await load(db, folder)
    first = ("what-phishing-wants",)
    await _learners_at(db, {
        "Ann": ("check-the-sender", None),
        "Bob": ("check-the-sender", None),
        "Cy": ("check-the-sender", None),  # lesson 1 not finished: it is the first live lesson Cy has not done
        "Dee": ("check-the-sender", None),
        "Eve": ("read-a-link", None),  # at a lesson that stays
    }, part=1, done={"Ann": first, "Bob": first, "Dee": (*first, "read-a-link", "odd-requests", "if-you-clicked"),
                     "Eve": first})
    _retire_lesson_two(folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await cli("course", "import", "--dry-run", str(folder)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-3:] == [
        "2 learners are at lesson check-the-sender, which this import would retire: they would go on at "
        "read-a-link, the first live lesson of the course they have not done, from its start.",
        "1 learner is at lesson check-the-sender, which this import would retire: they would go on at "
        "what-phishing-wants, the first live lesson of the course they have not done, from its start.",
        "1 learner is at lesson check-the-sender, which this import would retire: they have done every live "
        "lesson, so their next step would finish the course.",
    ]
    before = await snapshot(db)

    report = await load(db, folder)
    assert report.displaced == [Displaced(2, "check-the-sender", "read-a-link"),
                                Displaced(1, "check-the-sender", "what-phishing-wants"),
                                Displaced(1, "check-the-sender", None)]
    assert report.summary().splitlines()[-1] == (
        "1 learner is at lesson check-the-sender, which this import retires: they have done every live lesson, so "
        "their next step finishes the course.")
    after = await snapshot(db)
    assert after["enrollments"] == before["enrollments"]  # they are moved when they next go on, not now

    edit(folder / "course.yaml", "title: Act safely", "title: Act safely, fast")
    report = await load(db, folder)  # retires nothing more: no one to move
    assert report.displaced == [] and "which this import" not in report.summary()


async def test_a_learner_at_a_retired_lesson_goes_on_where_the_report_says(learning_bot, tmp_path):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "📘 Lesson 2 of 5")  # lesson 1 done, lesson 2 begun

    # the author retires lesson 2 and puts a new lesson first: the learner has not done it
    folder = copy_course(SAMPLE, tmp_path / "course")
    _retire_lesson_two(folder)
    (folder / "lessons" / "00-a-new-start.md").write_text("---\nid: a-new-start\ntitle: A new start\n---\n\nNew.\n")
    edit(folder / "course.yaml", "      - lessons/01-what-phishing-wants.md\n",
         "      - lessons/00-a-new-start.md\n      - lessons/01-what-phishing-wants.md\n")
    async with bot.db.transaction() as session:
        report = await import_course(session, load_course(folder))
    assert report.summary().splitlines()[-1] == (
        "1 learner is at lesson check-the-sender, which this import retires: they go on at a-new-start, the first "
        "live lesson of the course they have not done, from its start.")

    [sent] = await t.say("/next")
    assert sent.startswith("📘 Lesson 1 of 5: A new start")

