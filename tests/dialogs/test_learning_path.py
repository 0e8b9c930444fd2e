"""The learning path where the course or the learner's settings change under it: a quiz or a review whose questions
a re-import takes out goes on with those left (and ends the lesson when none is); /progress counts the reviews /review
asks; "EST" means New York's clock; quiet hours hold back the lessons "Later" and /resume would promise; a
certificate held back for a pass mark a re-import dropped is issued on /certificate, and its page keeps its printed
date; a pause typed after /stop keeps the stop."""

from __future__ import annotations

from sqlalchemy import select, update

from storage.courses import Question
from tests.dialogs.learning_support import (  # noqa: F401
    Learning,
    at_the_first_quiz_question,
    import_sample,
    learning_bot,
    onboard,
)


def drop_questions_after_the_first(folder):
    """The author keeps only the first quiz question of lesson 1 ("### act-at-once" onwards goes)."""
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    text = lesson.read_text()
    lesson.write_text(text[:text.index("### act-at-once")].rstrip() + "\n")


async def test_quiz_whose_remaining_questions_were_retired_finishes_the_lesson(learning_bot, tmp_path):
    """Ann is at question 1 of 3; the author re-imports the course without questions 2 and 3. Her answer to
    question 1 should end the lesson ("Lesson done"), not leave a quiz with nothing to ask that swallows her next
    message."""
    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    asked = t.last()
    drop_questions_after_the_first(folder)
    await import_sample(bot, folder)
    replies = await t.say("pressed", choice=asked.choices[1].value)
    assert any(r.startswith("🎉 Lesson done") for r in replies), replies
    after = await t.say("what does a phishing email want from me?")
    assert after, "the learner's next message got no reply at all"


async def test_after_such_a_quiz_the_learners_next_message_is_answered(learning_bot, tmp_path):
    """The same, then Ann asks a question: the quiz left open with nothing to ask takes it and says nothing."""
    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    asked = t.last()
    drop_questions_after_the_first(folder)
    await import_sample(bot, folder)
    await t.say("pressed", choice=asked.choices[1].value)
    after = await t.say("Thanks")
    assert after, "the learner's next message got no reply at all"


async def finish_first_lesson_with_every_card_due(bot, t: Learning):
    """Ann finishes lesson 1 (three questions), and, a day later in the cards, all three are due for review."""
    from datetime import datetime, timedelta, timezone

    from storage.courses import QuestionCard
    from tests.dialogs.learning_support import learner_row

    await onboard(t)
    await t.press("Start my first lesson")
    for _ in range(3):
        await t.say("next")
    await t.press("Urgency")
    await t.say("false")
    await t.say("smishing")
    user, _learner = await learner_row(bot, "test", t.chat)
    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id)
                              .values(due=datetime.now(timezone.utc) - timedelta(hours=1)))
    return user


def drop_the_second_question(folder):
    """The author takes out lesson 1's second quiz question (the true/false "act-at-once"), keeping the third."""
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    text = lesson.read_text()
    lesson.write_text(text[:text.index("### act-at-once")] + text[text.index("### smishing-name"):])


async def test_a_review_goes_on_past_a_question_retired_while_it_ran(learning_bot, tmp_path):
    """Ann starts a review of 3 questions; while she answers question 1 the author re-imports the course without
    question 2 (question 3 stays). The review should skip the question taken out and ask question 3 (as the quiz
    does); instead it asks the retired question, and her answer to it ends the whole review with "That question
    is not open to you yet", question 3 never asked."""
    import shutil

    from tests.dialogs.learning_support import SAMPLE

    bot, channel = learning_bot
    folder = shutil.copytree(SAMPLE, tmp_path / "course")
    await import_sample(bot, folder)
    t = Learning(bot, channel)
    await finish_first_lesson_with_every_card_due(bot, t)
    intro, first = await t.say("/review")
    assert intro == "3 questions to review. Here they come:" and first.startswith("Review 1 of 3")
    drop_the_second_question(folder)
    await import_sample(bot, folder)
    replies = await t.press("Urgency")
    assert replies[0].startswith("✅ Right!")
    if replies[-1].startswith("Review 2 of 3\nTrue or false"):  # the retired question, asked all the same
        replies = await t.press("False")
    assert "That question is not open to you yet. Send /next to go on from where you are." not in replies, replies
    assert replies[-1].endswith("What is phishing by text message (SMS) often called?\n\n(Type your answer.)"), \
        replies


async def test_progress_counts_as_due_only_the_reviews_review_would_ask(learning_bot):
    """Ann, granted the paid course, finishes its (paid) lesson 2; the grant is revoked (a refund), and lesson 2's
    questions come due: /review (as the review reminder) asks none of them, and /progress promises none."""
    from sqlalchemy import func

    from storage.courses import Entitlement, Lesson, QuestionCard
    from tests.dialogs.learning_support import answer_until, learner_row
    from tests.dialogs.test_choices_and_access import granted_the_paid_course_past_its_first_lesson

    bot, channel = learning_bot
    t, user = await granted_the_paid_course_past_its_first_lesson(bot, channel)
    await t.press("More now")
    await answer_until(t, bot, "🎉 Lesson done")
    _user, learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        await session.execute(update(Entitlement).values(revoked_at=func.now()))  # as /admin refund does
        lesson_two = await session.scalar(select(Lesson.id).where(Lesson.course_id == learner.course_id,
                                                                  Lesson.position == 2))
        paid_questions = select(Question.id).where(Question.lesson_id == lesson_two)
        await session.execute(update(QuestionCard).where(QuestionCard.question_id.in_(paid_questions))
                              .values(due=func.now()))
    [progress] = await t.say("/progress")
    assert "to review now" not in progress and "Review now" not in t.labels()
    review = await t.say("/review")
    assert review[0].startswith("Nothing to review now."), review


async def test_a_learner_who_types_est_gets_new_yorks_clock_with_daylight_saving(learning_bot):
    """Ann in New York answers the time-zone question with "EST". dialogs/times.py means abbreviations as "the place
    that uses them, daylight saving time included" (est → America/New_York, as cst → America/Chicago), but the
    legacy fixed-offset zone "EST" (UTC-5 all year) is matched first: from March to November her lessons come an
    hour late by her clock."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.dialogs.learning_support import learner_row

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    await t.say("Ann")
    [confirm] = await t.say("EST")
    await t.press("Yes, that's right")
    user, _learner = await learner_row(bot, "test", "ann")
    july = datetime(2026, 7, 1, 12)
    assert july.replace(tzinfo=ZoneInfo(user.timezone)).utcoffset() == \
        july.replace(tzinfo=ZoneInfo("America/New_York")).utcoffset(), (confirm, user.timezone)


async def test_a_certificate_withheld_for_a_pass_mark_since_dropped_can_still_be_had(learning_bot, tmp_path):
    """Ann finishes a course whose pass mark (100%) she missed by one question: the certificate is withheld. The
    author then re-imports the course without a pass mark. Every lesson is done and nothing stands in the way, yet
    no command issues it: /certificate says "finish a course to earn one", /retake says there is nothing to retake
    (no pass mark), /next says the course is finished."""
    from bot.messages import Document
    from tests.dialogs.learning_support import answer_until

    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path, pass_mark=100)
    await t.press(t.last().choices[0].label)  # "Authority": the one question missed (Urgency is right)
    await answer_until(t, bot, "The certificate needs")
    yaml = (folder / "course.yaml").read_text()
    (folder / "course.yaml").write_text(yaml.replace("\npass_mark: 100\n", "\n"))
    await import_sample(bot, folder)
    said = {command: await t.say(command) for command in ("/certificate", "/retake", "/next")}
    assert any(isinstance(reply, Document) for reply in channel.sent["ann"]), said


async def test_later_and_resume_promise_no_lesson_that_quiet_hours_skip(learning_bot):
    """Ann has lessons at 06:00 and sets quiet hours 22:00-07:00. /settings rightly warns that no lesson would come
    (the planner skips a day whose lesson time is in the quiet hours: QUIET_HOURS). Yet "Later" and /resume then
    promise her the next lesson "at 06:00"."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t, at="06:00")
    saved = await t.say("/settings quiet 22:00-07:00")
    assert any("fall inside your quiet hours" in line for line in saved), saved
    [later] = await t.say("/later")
    await t.say("/pause")
    [resumed] = await t.say("/resume")
    assert "at 06:00" not in later, later
    assert "at 06:00" not in resumed, resumed


async def test_the_verification_page_shows_the_date_printed_on_the_certificate(learning_bot):
    """Ann (UTC+14) finishes the course: the PDF says "on <date>" in her zone then. She later moves to UTC-12 (any
    two zones 26 hours apart). The public page, which says it shows the date "as printed on the certificate",
    re-reads her *current* zone and shows another day, so a genuine certificate's date does not match its page."""
    import re

    import httpx
    from pypdf import PdfReader
    from starlette.applications import Starlette

    from bot.certificate_page import certificate_routes
    from bot.messages import Document
    from tests.dialogs.learning_support import answer_until

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t, zone="UTC+14")
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🏆")
    await bot.settle()
    [document] = [r for r in channel.sent["ann"] if isinstance(r, Document)]
    code = document.caption.rsplit(" ", 1)[1]
    printed = " ".join(PdfReader(document.path).pages[0].extract_text().split())
    printed_date = re.search(r"on (\d{1,2} \w+ \d{4})", printed)[1]
    await t.say("/settings zone UTC-12")
    await t.press("Yes, that's right")
    app = Starlette(routes=certificate_routes(bot.db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        page = (await client.get(f"/certificates/{code}")).text
    from datetime import datetime
    shown = datetime.strptime(re.search(r"<dd[^>]*>(\d{4}-\d{2}-\d{2})</dd>", page)[1], "%Y-%m-%d")
    assert f"{shown.day} {shown:%B %Y}" == printed_date, (printed_date, f"{shown:%Y-%m-%d}")


async def test_a_pause_typed_after_stop_does_not_turn_the_lessons_back_on(learning_bot):
    """Ann stops the lessons ("I won't send you anything on my own … send /resume to start again"), then types
    "pause 3 days". /pause overwrites the stop with a 3-day pause, so four days later the scheduler pushes her a
    lesson though she never sent /resume."""
    from datetime import datetime, timedelta, timezone

    from dialogs.lessons import deliver_next_lesson
    from storage.models import User
    from tests.dialogs.learning_support import learner_row

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/stop")
    [stopped] = await t.press("Stop the lessons")
    assert stopped.startswith("Stopped: I won't send you anything on my own.")
    paused = await t.say("pause 3 days")
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        person = await session.get(User, user.id)
        pushed = await deliver_next_lesson(session, person, now=datetime.now(timezone.utc) + timedelta(days=4))
    assert pushed == [], (paused, [getattr(r, "text", r)[:60] for r in pushed])


async def test_a_quiz_asked_again_with_every_question_left_taken_out_ends_its_lesson(learning_bot, tmp_path):
    """Ann is at question 1 of 3; the author takes out all three. Her old button, pressed now, is the quiz asked
    again: with nothing left to ask, the lesson ends, and her next message is answered as any other."""
    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    asked = t.last()
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    text = lesson.read_text()
    lesson.write_text(text[:text.index("## Quiz")].rstrip() + "\n")
    await import_sample(bot, folder)
    replies = await t.say("pressed", choice=asked.choices[1].value)
    assert any(reply.startswith("🎉 Lesson done") for reply in replies), replies
    assert await t.say("/progress")
