"""Questions answered from the course material, through the real pipeline, the real index and the offline model."""

from __future__ import annotations

import asyncio
import re

import pytest

from authoring.format import load_course
from authoring.indexing import ingest_course
from bot.config import knowledge_settings
from dialogs.ask import unanswered_reply
from dialogs.i18n import LANGUAGES, translator
from knowledge.answer import NoAnswer
from tests.dialogs.learning_support import PAID, SAMPLE, Learning, import_sample, learning_bot, onboard  # noqa: F401


@pytest.fixture
async def indexed(learning_bot, settings):
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    for folder in (SAMPLE, PAID):  # both courses are in the index; the learner may read only the free one
        await asyncio.to_thread(ingest_course, load_course(folder), knowledge_settings(settings))
    return bot, channel


async def test_a_question_is_answered_from_the_lesson_with_its_source(indexed):
    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    [answer] = await t.say("what is smishing?")
    assert answer.startswith("From your course:")
    assert "smishing" in answer and "What a phishing message wants" in answer


async def test_what_the_course_does_not_cover_is_declined_honestly(indexed):
    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    [answer] = await t.say("what is the capital of France?")
    assert answer.startswith("I couldn't find that in your course material")
    assert "\n\nThe nearest your course comes to it: " in answer, "what the course does cover, by lesson"


async def test_every_question_is_kept_with_what_came_of_it(indexed):
    """The admins' knowledge page counts these: what was asked, answered or declined, and from which lesson."""
    from sqlalchemy import select

    from storage.knowledge import KnowledgeQuestion

    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("What is  smishing?")
    await t.say("what is the capital of France?")
    async with bot.db.sessions() as session:
        rows = list(await session.scalars(select(KnowledgeQuestion).order_by(KnowledgeQuestion.id)))
    assert [(r.question, r.normalized, r.outcome, r.reason) for r in rows] == [
        ("What is  smishing?", "what is smishing", "answered", None),
        ("what is the capital of France?", "what is the capital of france", "declined", "not_covered"),
    ]
    assert (rows[0].course, rows[0].topic) == ("spot-phishing", "What a phishing message wants")
    assert rows[1].course == "spot-phishing" and rows[1].topic, "a declined question keeps the nearest lesson"


async def test_a_paid_course_the_learner_is_not_entitled_to_is_never_quoted(indexed):
    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    paid_words = load_course(PAID).lessons[-1].parts[0].split(".")[0]  # the first sentence of a locked lesson
    [answer] = await t.say(paid_words)
    assert "Passwords that hold" not in answer
    assert paid_words not in answer


async def test_a_question_before_any_course_gets_the_welcome_and_waits_for_the_set_up(indexed):
    bot, channel = indexed
    [welcome] = await Learning(bot, channel, chat="bea").say("what is smishing?")
    assert welcome.startswith("Hi! I'm Lessonbot") and "Is that OK with you?" in welcome
    waited = await Learning(bot, channel, chat="bea").say("what is smishing?")
    assert waited[0].startswith("I'll answer questions about your course as soon as your lessons are set up")
    assert "Is that OK with you?" in waited[-1]


async def test_answers_come_in_the_learners_language(indexed):
    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/language es")
    [answer] = await t.say("what is smishing?")
    assert answer.startswith("De tu curso:")


def test_every_reason_for_no_answer_has_its_words_in_every_language():
    for language in LANGUAGES:
        said = {unanswered_reply(translator(language), reason) for reason in NoAnswer}
        assert len(said) == len(NoAnswer) and all(said)


async def test_a_list_is_quoted_whole_with_the_sentence_that_leads_into_it(indexed):
    """"What should I do if I clicked" is answered by a numbered list: its lead-in and its steps come together, each
    step with its number, never one half without the other."""
    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    [answer] = await t.say("what should I do if I clicked?")
    assert "If you clicked, or typed something in, act at once and calmly:" in answer
    assert "\n1. Change that password from the real site or app" in answer
    assert "\n4. If you opened a file or installed something" in answer


def test_an_authors_lesson_title_and_a_models_words_show_as_written_whatever_they_hold():
    from types import SimpleNamespace

    from channels.markdown import SLACK_MRKDWN, TELEGRAM_HTML, render
    from dialogs.ask import presented
    from knowledge.answer import FROM, CourseAnswer
    from knowledge.extractive import Quote
    from knowledge.retrieval import Passage

    title = "Init: __init__ vs *args* [docs](https://evil.example/login)"
    passage = Passage(chunk_id="c1", course_id="py", lesson_id="l1", lesson_title=title, heading_path="",
                      source="x", text="A constructor sets up an *object*.", score=1, similarity=1, keyword_score=1)
    turn = SimpleNamespace(user=SimpleNamespace(locale="en"))
    quoted = Quote(chosen=((0, 0, "A constructor sets up an *object*."),), passages=(passage,), confidence=1.0,
                   shares_words=True).answer(0.0)
    steered = CourseAnswer(text="From your course: [[Reset it here](https://evil.example)](https://evil.example) [1]"
                                f"\n\n{FROM} [1] {title}")
    for answer in (quoted, steered):
        for target in (TELEGRAM_HTML, SLACK_MRKDWN):
            shown = render(presented(turn, answer), target)
            # no link named otherwise than its address (Slack links an address to itself, `<url>`, as written)
            assert "<a href" not in shown and not re.search(r"<https?://[^>]*\|", shown), shown
            assert "<b>init</b>" not in shown and "<https://evil.example)" not in shown, shown
    # the course's own sentence keeps its Markdown; the title around it does not take any
    assert "<i>object</i>" in render(presented(turn, quoted), TELEGRAM_HTML)
    assert "*args*" in render(presented(turn, quoted), TELEGRAM_HTML)


async def test_a_course_not_in_the_knowledge_store_is_said_to_be_getting_ready_not_to_lack_the_answer(
    learning_bot, caplog
):
    """The course was imported but is not in the store (its indexing failed, the store's folder was lost or made
    anew): the learner is not told the course lacks what it teaches, the admins' list of what the course could add is
    not filled with what it does cover, the log says which course to import again, and the question uses none of the
    learner's minute."""
    import logging

    from sqlalchemy import select

    from storage.knowledge import KnowledgeAllowance, KnowledgeQuestion

    bot, channel = learning_bot  # the sample course imported, never indexed
    t = Learning(bot, channel)
    await onboard(t)
    with caplog.at_level(logging.WARNING, logger="knowledge.answerer"):
        [answer] = await t.say("what is smishing?")
    assert answer.startswith("I can't look things up in your course material yet")
    assert "couldn't find" not in answer
    [warning] = [r.getMessage() for r in caplog.records if r.name == "knowledge.answerer"]
    assert "spot-phishing" in warning and "lessonbot course import" in warning
    async with bot.db.sessions() as session:
        [row] = list(await session.scalars(select(KnowledgeQuestion)))
        allowance = await session.scalar(select(KnowledgeAllowance))
    assert (row.outcome, row.reason) == ("declined", "not_indexed")
    assert allowance is None or allowance.minute_questions == 0


async def test_ask_with_a_question_is_answered_on_every_app_and_alone_asks_what_to_look_up(indexed):
    """The welcome promises answers to questions about the course; /ask QUESTION (as on Slack, and in a Telegram
    group, where privacy mode lets commands through) was "I don't know the command /ask" everywhere else."""
    from sqlalchemy import select

    from storage.knowledge import KnowledgeQuestion

    bot, channel = indexed
    t = Learning(bot, channel)
    await onboard(t)
    [answer] = await t.say("/ask what is smishing?")
    assert answer.startswith("From your course:") and "smishing" in answer
    [asked_for] = await t.say("/ask")
    assert asked_for == "What would you like to know? Ask me anything about your course."
    [helped] = await t.say("/help")
    assert "\n/ask — ask a question about your course (or just type it)\n" in helped
    async with bot.db.sessions() as session:
        assert list(await session.scalars(select(KnowledgeQuestion.question))) == ["what is smishing?"]
