"""Per-learner rate limit, daily token budget and answer cache, shared through the database (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from knowledge.answer import NoAnswer
from knowledge.answerer import Answerer
from knowledge.ingest import ingest_path
from knowledge.store import open_store
from storage.db import Database
from storage.knowledge import KnowledgeAllowance, give_back_question, reserve_tokens, spend_tokens, take_question
from tests.knowledge.conftest import PHOTOSYNTHESIS


@pytest.fixture
async def database(settings):
    db = Database(settings.resolved_database_url)
    yield db
    await db.dispose()


@pytest.fixture
def answering(model_settings, course_dir: Path):
    """Model settings with the biology course ingested (the allowances live in `database`: SQLite or PostgreSQL)."""
    ingest_path(open_store(model_settings), course_dir, course_id="bio")
    return model_settings


async def test_a_learner_asking_too_fast_gets_a_friendly_wait(answering, database):
    answerer = Answerer(replace(answering, rate_limit_per_minute=2), database=database)

    def ask(learner: int):
        return answerer.answer("Where is the Calvin cycle?", learner=learner, allowed_courses={"bio"})

    first, second, third = [await ask(7) for _ in range(3)]
    someone_else = await ask(8)

    assert not first.limited and not second.limited
    assert third.limited and third.unanswered is NoAnswer.TOO_FAST
    assert not someone_else.limited
    # a second answerer (another process) shares the count
    other = Answerer(replace(answering, rate_limit_per_minute=2), database=database)
    assert (await other.answer("Calvin cycle?", learner=7, allowed_courses={"bio"})).limited


async def test_the_daily_token_budget_ends_model_answers_for_the_day_and_quotes_answer_instead(
        answering, database, openai):
    answerer = Answerer(replace(answering, daily_token_budget=100), database=database)

    first = await answerer.answer("Where does the Calvin cycle take place?", learner=3, allowed_courses={"bio"})
    second = await answerer.answer("What do the light reactions release?", learner=3, allowed_courses={"bio"})

    assert first.tokens > 100 and not first.limited
    # no model call, but still an answer: the course's own sentences cost nothing
    assert not second.limited and second.unanswered is None and second.quotes and second.tokens == 0
    assert len(openai.chat_requests) == 1
    fresh = await answerer.answer("What do the light reactions release?", learner=4, allowed_courses={"bio"})
    assert not fresh.limited


async def test_one_learners_questions_asked_at_once_keep_within_the_daily_token_budget(answering, database, openai):
    """Five questions of one learner at the same moment (their chats on several apps): each call sets its tokens
    aside before it is made, so one call spends the budget and the others are quoted from the course; the tokens a
    call really took are what stays counted."""
    answerer = Answerer(replace(answering, daily_token_budget=100), database=database)
    questions = ["Where does the Calvin cycle take place?", "What do the light reactions release?",
                 "What is chlorophyll for?", "Where does cellular respiration happen?",
                 "What does the Calvin cycle fix?"]

    answers = await asyncio.gather(*(answerer.answer(q, learner=5, allowed_courses={"bio"}) for q in questions))

    assert len(openai.chat_requests) == 1
    assert all(not answer.limited for answer in answers)
    [called] = [answer for answer in answers if answer.tokens]
    async with database.sessions() as session:
        assert (await session.get(KnowledgeAllowance, "5")).day_tokens == called.tokens


async def test_repeated_questions_come_from_the_cache_until_the_lesson_changes(answering, database, openai, course_dir):
    answerer = Answerer(answering, database=database)
    question = "Where does the Calvin cycle take place?"

    first = await answerer.answer(question, learner=1, allowed_courses={"bio"})
    again = await answerer.answer("where does the calvin  cycle take place?", learner=2, allowed_courses={"bio"})

    assert len(openai.chat_requests) == 1
    assert again.cached and again.tokens == 0 and again.text == first.text and again.sources == first.sources

    (course_dir / "photosynthesis.md").write_text(PHOTOSYNTHESIS.replace("in the stroma", "in the chloroplast stroma"))
    ingest_path(answerer.store, course_dir, course_id="bio")
    edited = await answerer.answer(question, learner=1, allowed_courses={"bio"})

    assert len(openai.chat_requests) == 2 and not edited.cached
    assert "chloroplast stroma" in edited.text


async def test_the_days_model_calls_are_capped_over_all_learners_and_processes(answering, database, openai):
    """Each new web chat session is a new learner with a token budget of its own; MODEL_CALLS_PER_DAY caps them all."""
    capped = replace(answering, model_calls_per_day=2)
    answerer, other_process = Answerer(capped, database=database), Answerer(capped, database=database)

    first = await answerer.answer("Where does the Calvin cycle take place?", learner=11, allowed_courses={"bio"})
    second = await other_process.answer("What do the light reactions release?", learner=12, allowed_courses={"bio"})
    third = await answerer.answer("What is chlorophyll for?", learner=13, allowed_courses={"bio"})

    assert not first.limited and not second.limited
    assert not third.limited and third.quotes  # quoted from the course: the cap is the deployment's, not theirs
    assert len(openai.chat_requests) == 2
    # An answer already given still comes from the cache: it costs no call.
    again = await other_process.answer("Where does the Calvin cycle take place?", learner=14, allowed_courses={"bio"})
    assert again.cached and not again.limited and len(openai.chat_requests) == 2


async def test_a_cancelled_model_call_gives_back_the_tokens_it_set_aside(answering, database, openai):
    """The worker stops while the model streams: what the call set aside is given back, not kept for the day."""
    openai.piece_delay = 5.0
    answerer = Answerer(replace(answering, daily_token_budget=100_000), database=database)
    asked = asyncio.create_task(answerer.answer("Where does the Calvin cycle take place?", learner=9,
                                                allowed_courses={"bio"}))
    async with asyncio.timeout(10):
        while not openai.chat_requests:
            await asyncio.sleep(0.05)
    asked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asked
    async with database.sessions() as session:
        assert (await session.get(KnowledgeAllowance, "9")).day_tokens == 0


async def test_a_call_set_aside_before_midnight_counts_whole_on_the_new_day(database):
    before, after = datetime(2027, 3, 1, 23, 59, 59, tzinfo=UTC), datetime(2027, 3, 2, 0, 0, 5, tzinfo=UTC)
    async with database.transaction() as session:
        day = await reserve_tokens(session, "L", 680, budget=20_000, now=before)
    async with database.transaction() as session:
        await spend_tokens(session, "L", 300, reserved=680, reserved_on=day or "", now=after)
    async with database.sessions() as session:
        row = await session.get(KnowledgeAllowance, "L")
    assert (day, row.day, row.day_tokens) == ("2027-03-01", "2027-03-02", 300)
    async with database.transaction() as session:  # the same day: what was set aside is replaced by what was taken
        day = await reserve_tokens(session, "L", 680, budget=20_000, now=after)
        await spend_tokens(session, "L", 250, reserved=680, reserved_on=day or "", now=after)
    async with database.sessions() as session:
        assert (await session.get(KnowledgeAllowance, "L")).day_tokens == 550



async def test_a_question_given_back_frees_its_minutes_slot_but_never_one_of_a_newer_minute(database):
    """The answerer failed on the question taken at 12:00:10: its slot is free again for the rest of that minute. One
    taken in a minute since over is not given back out of the next minute's count."""
    at = [datetime(2027, 3, 1, 12, 0, s, tzinfo=UTC) for s in (0, 10, 20)]

    async def take(now: datetime) -> bool:
        async with database.transaction() as session:
            return await take_question(session, "L", per_minute=2, now=now)

    async def give_back(taken_at: datetime) -> None:
        async with database.transaction() as session:
            await give_back_question(session, "L", taken_at=taken_at)

    assert await take(at[0]) and await take(at[1]) and not await take(at[2])
    await give_back(at[1])
    assert await take(at[2]) and not await take(at[2])
    next_minute = datetime(2027, 3, 1, 12, 1, 5, tzinfo=UTC)
    assert await take(next_minute)
    await give_back(at[2])  # its minute is over: the new minute keeps its count
    async with database.sessions() as session:
        assert (await session.get(KnowledgeAllowance, "L")).minute_questions == 1


async def test_an_answer_composed_for_a_person_s_question_goes_when_they_delete_their_data(answering, database, openai):
    """The model's answer may say again what the learner typed; kept in the shared cache, it would outlive their
    erasure by KNOWLEDGE_CACHE_SECONDS (and be given to whoever asks the same). Their erasure takes the answers
    composed for their questions; another learner's stay."""
    from sqlalchemy import select

    from storage.knowledge import KnowledgeCachedAnswer
    from storage.models import User
    from storage.personal_data import erase_person

    async with database.transaction() as session:
        ann, bob = User(display_name="Ann"), User(display_name="Bob")
        session.add_all([ann, bob])
    answerer = Answerer(answering, database=database)
    hers, his = "Where does the Calvin cycle take place?", "What do the light reactions release?"
    await answerer.answer(hers, learner=ann.id, allowed_courses={"bio"})
    await answerer.answer(his, learner=bob.id, allowed_courses={"bio"})
    async with database.sessions() as session:
        assert len(list(await session.scalars(select(KnowledgeCachedAnswer)))) == 2

    async with database.transaction() as session:
        await erase_person(session, ann.id, by="learner")
    assert not (await answerer.answer(hers, learner=bob.id, allowed_courses={"bio"})).cached
    assert (await answerer.answer(his, learner=bob.id, allowed_courses={"bio"})).cached


async def test_answers_past_their_age_go_with_the_nightly_prune_in_batches_never_while_a_learner_waits(
        answering, database, openai):
    """An answer older than KNOWLEDGE_CACHE_SECONDS is given to no one; it was deleted, with every other expired one
    in one statement, by the next learner's question, who waited for it. The nightly prune deletes them instead, a
    batch a transaction; and all of them once the cache is turned off (KNOWLEDGE_CACHE_SECONDS=0), which asks no
    question's help to clear it."""
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from scheduler.clock import prune
    from scheduler.context import JobContext
    from storage.knowledge import KnowledgeCachedAnswer
    from storage.models import utcnow

    async def cached() -> int:
        async with database.sessions() as session:
            return await session.scalar(select(func.count()).select_from(KnowledgeCachedAnswer))

    answerer, kept = Answerer(answering, database=database), timedelta(seconds=answering.cache_seconds)
    for question in ("Where does the Calvin cycle take place?", "What do the light reactions release?"):
        await answerer.answer(question, learner=1, allowed_courses={"bio"})
    async with database.transaction() as session:  # both composed longer ago than they are kept
        await session.execute(update(KnowledgeCachedAnswer).values(created_at=utcnow() - kept - timedelta(hours=1)))
    assert not (await answerer.answer("What do the light reactions release?", learner=2,
                                      allowed_courses={"bio"})).cached
    await answerer.answer("What is chlorophyll?", learner=2, allowed_courses={"bio"})
    assert await cached() == 3  # (the Calvin cycle's, past its age, is still there, for the prune)

    pruned = await prune(JobContext(db=database, answers_kept=kept), batch=1)
    assert pruned["knowledge_answer_cache"] == 1 and await cached() == 2
    turned_off = await prune(JobContext(db=database, answers_kept=timedelta(0)), batch=1)
    assert turned_off["knowledge_answer_cache"] == 2 and await cached() == 0
