"""The dashboard's counts, on SQLite and PostgreSQL, over rows whose right answers are known; and the scheduler job
that keeps them in `dashboard_figures`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from authoring.format import load_course
from authoring.importer import import_course
from scheduler.context import JobContext
from scheduler.dashboard import recount
from storage import dashboard
from storage.courses import COMPLETED, Course, Enrollment, Lesson, LessonProgress, Question, QuestionCard
from storage.db import Database
from storage.knowledge import KnowledgeQuestion
from storage.learners import ACTIVE, ONBOARDING, Learner
from storage.models import ChannelIdentity, Conversation, InboundMessage, OutboxMessage, User
from storage.payments import PURCHASE_CHARGE, Payment, PaymentCharge, revenue
from tests.dialogs.learning_support import SAMPLE

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=timezone.utc)  # a Thursday


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    async with database.transaction() as session:
        await import_course(session, load_course(SAMPLE), now=NOW)
    yield database
    await database.dispose()


async def add_learner(session, name: str, *, channel: str = "telegram", external: str | None = None,
                      joined: datetime = NOW - timedelta(days=40), active: datetime | None = None,
                      consent: bool = True, status: str = ACTIVE, streak: int = 0) -> User:
    user = User(display_name=name, created_at=joined, last_active_at=active)
    session.add(user)
    await session.flush()
    session.add(ChannelIdentity(user_id=user.id, channel=channel, external_id=external or name.lower()))
    session.add(Learner(user_id=user.id, status=status, consent_at=joined if consent else None, created_at=joined,
                        streak_days=streak, best_streak=streak,
                        last_active_on=(active or joined).date() if streak else None))
    await session.flush()
    return user


async def seed(db: Database) -> dict[str, int]:
    async with db.transaction() as session:
        course = await session.scalar(select(Course))
        lessons = list(await session.scalars(select(Lesson).where(Lesson.course_id == course.id)
                                             .order_by(Lesson.position)))
        first_question = await session.scalar(select(Question).where(Question.lesson_id == lessons[0].id)
                                              .order_by(Question.position))
        ann = await add_learner(session, "Ann", active=NOW - timedelta(hours=1), streak=3)
        bob = await add_learner(session, "Bob", channel="slack", external="T01/U02",
                                active=NOW - timedelta(days=3), joined=NOW - timedelta(days=2))
        await add_learner(session, "Cleo", consent=False, status=ONBOARDING, joined=NOW - timedelta(days=1))
        for user, done in ((ann, len(lessons)), (bob, 1)):
            session.add(Enrollment(user_id=user.id, course_id=course.id, started_at=NOW - timedelta(days=30),
                                   status=COMPLETED if done == len(lessons) else ACTIVE,
                                   completed_at=NOW - timedelta(days=20) if done == len(lessons) else None))
            for lesson in lessons[:done]:
                session.add(LessonProgress(user_id=user.id, lesson_id=lesson.id, parts_seen=1,
                                           started_at=NOW - timedelta(days=2), completed_at=NOW - timedelta(days=2)))
        # Five answers to the first question: 1 right of 5; the wrong ones ended on "b" (ann) and "c" (bob).
        session.add(QuestionCard(user_id=ann.id, question_id=first_question.id, attempts=3, correct=1,
                                 last_rating=1, last_answer="b", due=NOW - timedelta(days=1),
                                 last_reviewed_at=NOW - timedelta(days=1)))
        session.add(QuestionCard(user_id=bob.id, question_id=first_question.id, attempts=2, correct=0,
                                 last_rating=1, last_answer="c", due=NOW + timedelta(days=1),
                                 last_reviewed_at=NOW - timedelta(days=1)))
        chat = Conversation(channel="telegram", chat_id="ann", user_id=ann.id, state={})
        session.add(chat)
        await session.flush()
        for n, days_ago in enumerate((0, 0, 1, 5)):
            session.add(InboundMessage(channel="telegram", platform_id=f"m{n}", conversation_id=chat.id, seq=n + 1,
                                       sender_id="ann", payload={"text": f"hello {n}"}, status="done",
                                       received_at=NOW - timedelta(days=days_ago, minutes=5)))
        session.add(OutboxMessage(conversation_id=chat.id, channel="telegram", chat_id="ann", payload={},
                                  status="sent", sent_at=NOW - timedelta(minutes=1),
                                  last_error="Telegram asked to slow down (retry after 3 s)"))
        session.add(OutboxMessage(conversation_id=chat.id, channel="telegram", chat_id="ann", payload={},
                                  status="dead", attempts=8, last_error="bot was blocked by the user"))
        for text, outcome, topic in (("What is smishing?", "answered", "What a phishing message wants"),
                                     ("what is  SMISHING", "answered", "What a phishing message wants"),
                                     ("capital of France?", "declined", None),
                                     ("Capital of France", "declined", None),
                                     ("why?", "limited", None)):
            session.add(KnowledgeQuestion(
                user_id=ann.id, asked_at=NOW - timedelta(hours=2), question=text,
                normalized=" ".join(text.lower().replace("?", "").split()), outcome=outcome,
                reason={"declined": "not_covered", "limited": "too_fast"}.get(outcome),
                course=course.slug if topic else None, topic=topic))
        refunded = Payment(user_id=ann.id, course_id=course.id, provider="stripe", reference="cs_1",
                           amount_minor=300, currency="GBP", status="refunded", channel="telegram", chat_id="ann",
                           sender_id="ann")
        paid = Payment(user_id=bob.id, course_id=course.id, provider="stripe", reference="cs_2", amount_minor=300,
                       currency="GBP", status="paid", period="month", channel="slack", chat_id="T01/U02",
                       sender_id="T01/U02")
        session.add_all([refunded, paid])
        await session.flush()
        session.add_all([  # Bob's subscription renewed once, at a promotion's price
            PaymentCharge(payment_id=refunded.id, reference=PURCHASE_CHARGE, amount_minor=300, charged_at=NOW,
                          refunded_at=NOW),
            PaymentCharge(payment_id=paid.id, reference=PURCHASE_CHARGE, amount_minor=300, charged_at=NOW),
            PaymentCharge(payment_id=paid.id, reference="in_2", amount_minor=250, charged_at=NOW),
        ])
        return {"ann": ann.id, "bob": bob.id, "lessons": len(lessons)}


async def test_the_overview_counts(db):
    await seed(db)
    async with db.sessions() as session:
        figures = await dashboard.overview(session, NOW)
        health = await dashboard.delivery_health(session)
    assert figures["learners"] == 2  # Cleo has not agreed
    assert figures["new"] == {"today": 0, "7d": 1, "30d": 1}
    assert figures["active"]["today"] == {"telegram": 1} and figures["active"]["7d"] == {"telegram": 1, "slack": 1}
    assert figures["messages"][-1] == ["2026-12-03", 2, 1] and figures["messages"][-2] == ["2026-12-02", 1, 0]
    assert len(figures["messages"]) == dashboard.DAYS and figures["rate_limited_24h"] == 1
    assert (health["dead"], health["pending"]) == (1, 0)
    assert health["dead_letters"][0][1:4] == ["telegram:ann", 8, "bot was blocked by the user"]


async def test_the_learning_counts(db):
    ids = await seed(db)
    async with db.sessions() as session:
        figures = await dashboard.learning(session, NOW)
    assert figures["funnel"] == [["started", 3], ["consented", 2], ["onboarded", 2], ["lesson_one", 2],
                                 ["first_quiz", 2], ["half", 1], ["completed", 1]]
    [course] = figures["courses"]
    assert (course["enrolled"], course["completed"], course["median_days"]) == (2, 1, 10.0)
    assert course["lessons"] == ids["lessons"]
    [hardest] = figures["hardest"]
    assert (hardest["answers"], hardest["accuracy"]) == (5, 0.2)
    assert sorted(hardest["wrong"]) == [["b", 1], ["c", 1]]
    assert figures["lessons"][0][3:] == [5, 0.2]
    assert figures["reviews_due"] == 1
    assert figures["retention"] == {"reviewed_cards": 2, "recalled": 0, "share": 0.0}


async def test_the_engagement_knowledge_and_revenue_counts(db):
    await seed(db)
    async with db.sessions() as session:
        engagement = await dashboard.engagement(session, NOW)
        knowledge = await dashboard.knowledge(session, NOW)
        takings = await revenue(session)
    assert engagement["daily_active"][-1] == ["2026-12-03", 1]
    assert dict(engagement["streaks"]) == {"0": 1, "1": 0, "2–3": 1, "4–7": 0, "8–14": 0, "15–30": 0, "31+": 0}
    # Ann joined six weeks before this one, Bob on Tuesday of this week; both took lessons on Tuesday.
    assert engagement["cohorts"] == [{"week": "2026-10-19", "learners": 1, "active": [0, 0, 0, 0, 0, 0, 1]},
                                     {"week": "2026-11-30", "learners": 1, "active": [1]}]
    assert (knowledge["asked"], knowledge["answered"], knowledge["declined"], knowledge["limited"]) == (5, 2, 2, 1)
    assert knowledge["topics"] == [["spot-phishing", "What a phishing message wants", 2]]
    assert knowledge["declined_most"][0][1:3] == ["capital of France?", 2]  # (asked at once: the first logged)
    [row] = takings
    assert (row.slug, row.currency, row.payments, row.renewals, row.paid_minor, row.refunds, row.refunded_minor,
            row.net_minor) == ("spot-phishing", "GBP", 2, 1, 850, 1, 300, 550)

async def test_a_question_declined_again_is_shown_in_the_words_it_was_first_asked_in(db):
    """The authors' "question (as first asked)": the words of the earliest of its askings, whatever later ones (other
    casing, other punctuation) would sort before them."""
    async with db.transaction() as session:
        ann = await add_learner(session, "Ann")
        for text, hours_ago in (("what is a VPN for?", 3), ("What is a VPN for", 2), ("WHAT IS A VPN FOR", 1)):
            session.add(KnowledgeQuestion(
                user_id=ann.id, asked_at=NOW - timedelta(hours=hours_ago), question=text,
                normalized="what is a vpn for", outcome="declined", reason="not_covered", course="spot-phishing"))
    async with db.sessions() as session:
        knowledge = await dashboard.knowledge(session, NOW)
    assert knowledge["declined_most"] == [["spot-phishing", "what is a VPN for?", 3, "2026-12-03"]]


async def test_a_streak_counts_while_no_lesson_day_went_by_without_learning(db):
    monday = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    async with db.transaction() as session:
        for name, days, streak in (("Weekdays", "12345", 6), ("Every day", "1234567", 9), ("Wednesdays", "3", 2)):
            user = await add_learner(session, name, active=datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc),
                                     streak=streak)  # last learned on Friday
            learner = await session.get(Learner, user.id)
            learner.lesson_days = days
    async with db.sessions() as session:
        engagement = await dashboard.engagement(session, monday)
    # the weekday learner's six days hold over the weekend, the every-day learner's nine ended on Saturday, the
    # Wednesday learner's two hold until Wednesday
    assert dict(engagement["streaks"]) == {"0": 1, "1": 0, "2–3": 1, "4–7": 1, "8–14": 0, "15–30": 0, "31+": 0}



async def test_a_streak_is_counted_by_the_learners_own_day(db):
    """Both learned last on Saturday, where each of them is, and learn every day: the New Yorker's streak holds until
    the end of their Sunday (as /progress tells them, with tonight's streak saver), the Tokyo learner's ended with
    theirs. At 02:00 UTC on Monday it is still Sunday evening in New York; at 16:00 UTC on Sunday it is already
    Monday in Tokyo."""
    async with db.transaction() as session:
        for name, zone, streak in (("New York", "America/New_York", 5), ("Tokyo", "Asia/Tokyo", 9)):
            user = await add_learner(session, name, active=datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc),
                                     streak=streak)
            user.timezone = zone
    for now in (datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc), datetime(2026, 12, 6, 16, 0, tzinfo=timezone.utc)):
        async with db.sessions() as session:
            engagement = await dashboard.engagement(session, now)
        assert dict(engagement["streaks"]) == {"0": 1, "1": 0, "2–3": 0, "4–7": 1, "8–14": 0, "15–30": 0,
                                               "31+": 0}, now

async def test_learners_are_found_by_name_or_address_and_a_workspace_sees_its_own(db):
    ids = await seed(db)
    async with db.sessions() as session:
        assert [row[0] for row in await dashboard.find_learners(session, "an")] == [ids["ann"]]
        assert [row[0] for row in await dashboard.find_learners(session, "slack:T01/")] == [ids["bob"]]
        assert await dashboard.find_learners(session, "ann", teams=["T01"]) == []
        assert [row[0] for row in await dashboard.find_learners(session, "b", teams=["T01"])] == [ids["bob"]]
        assert await dashboard.find_learners(session, "%") == []  # LIKE's wildcards are taken as typed
        assert [row[0] for row in await dashboard.find_learners(session, str(ids["ann"]))] == [ids["ann"]]
        for typed in ("²", "99999999999999999999"):  # a digit int() refuses; a number past a BIGINT
            assert await dashboard.find_learners(session, typed) == []
        found = await dashboard.timeline(session, ids["ann"])
    assert found["addresses"] == ["telegram:ann"]
    kinds = [event[1] for event in found["events"]]
    assert "lesson" in kinds and "wrong answer" in kinds and "message" in kinds


async def test_the_job_keeps_every_page_s_counts(db):
    await seed(db)
    took = await recount(JobContext(db=db, now=lambda: NOW))
    assert set(took) == set(dashboard.PAGES)
    async with db.sessions() as session:
        rows = {row.name: row for row in await session.scalars(select(dashboard.DashboardFigures))}
    assert set(rows) == set(dashboard.PAGES)
    assert rows["overview"].figures["learners"] == 2 and rows["overview"].computed_at == NOW
    async with db.transaction() as session:
        await dashboard.forget_quoted_figures(session)
    async with db.sessions() as session:
        assert await dashboard.snapshot(session, "knowledge") is None
        assert await dashboard.snapshot(session, "overview") is not None


async def test_later_counts_of_a_day_count_two_days_and_keep_the_older_ones(db):
    await seed(db)
    async with db.transaction() as session:
        first = await dashboard.compute(session, "overview", NOW)
        assert first.figures["messages"][-5][1:] == [0, 0]
        # As if the older days had been counted otherwise: a later count the same day keeps them.
        first.figures = {**first.figures, "messages": [[day, 7, 7] for day, _in, _out in first.figures["messages"]]}
    async with db.transaction() as session:
        later = await dashboard.compute(session, "overview", NOW + timedelta(hours=1))
    assert later.figures["messages"][-3] == ["2026-12-01", 7, 7]  # over: kept
    assert later.figures["messages"][-2:] == [["2026-12-02", 1, 0], ["2026-12-03", 2, 1]]  # yesterday and today
    async with db.transaction() as session:
        next_day = await dashboard.compute(session, "overview", NOW + timedelta(days=1))
    assert next_day.figures["messages"][-4] == ["2026-12-01", 0, 0]  # a new day's first count counts them all


async def test_learners_who_wrote_a_day_leave_out_what_a_platform_reported_about_them(db):
    """A group joined, a payment reported, Slack's Home tab opened: the platform's reports about Bob are kept as
    messages, but Bob wrote nothing that day (`storage.models.written`), so only Ann counts."""
    await seed(db)
    async with db.transaction() as session:
        chat = Conversation(channel="slack", chat_id="T01/U02", state={})
        session.add(chat)
        await session.flush()
        for n, report in enumerate(({"membership": "joined"}, {"successful_payment": {"total_amount": 300}},
                                    {"home_opened": True})):
            session.add(InboundMessage(channel="slack", platform_id=f"report-{n}", conversation_id=chat.id,
                                       seq=n + 1, sender_id="T01/U02", status="done",
                                       payload={"text": "", "meta": {"platform_report": True, **report}},
                                       received_at=NOW - timedelta(minutes=10)))
    async with db.sessions() as session:
        engagement = await dashboard.engagement(session, NOW)
    assert engagement["daily_active"][-1] == ["2026-12-03", 1]


async def test_a_learners_timeline_shows_what_they_wrote_not_what_a_platform_reported_about_them(db):
    """A payment reported in Ann's chat is a platform's report, not a message of hers: the timeline's messages are
    what she wrote (`storage.models.written`), not an empty line for each report."""
    ids = await seed(db)
    async with db.transaction() as session:
        chat = await session.scalar(select(Conversation).where(Conversation.chat_id == "ann"))
        for n in range(3):
            session.add(InboundMessage(channel="telegram", platform_id=f"paid-{n}", conversation_id=chat.id,
                                       seq=10 + n, sender_id="ann", status="done",
                                       payload={"text": "", "meta": {"platform_report": True,
                                                                     "successful_payment": {"total_amount": 150}}},
                                       received_at=NOW - timedelta(minutes=1)))
    async with db.sessions() as session:
        found = await dashboard.timeline(session, ids["ann"])
    messages = [event[2] for event in found["events"] if event[1] == "message"]
    assert sorted(messages) == ["hello 0", "hello 1", "hello 2", "hello 3"], messages
