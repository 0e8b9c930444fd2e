"""Choices through the web chat's HTTP API: a typed label counts as pressing it; a typed number that names no
button is told the options; a forged choice (a question of a paid course's last lesson, posted by a learner of the
free course) opens nothing and earns no certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from bot.app import create_app
from bot.config import Settings
from storage.courses import Course, Enrollment, Lesson, Question, QuestionCard
from storage.learners import Certificate
from tests.dialogs.learning_support import PAID, import_sample


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await import_sample(app.state.lessonbot)
        await import_sample(app.state.lessonbot, PAID)
        yield app


class WebLearner:
    """A person at the web chat page: posts what they type or press, and reads the replies it caused."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient, session: str) -> None:
        self.app, self.client, self.session = app, client, session
        self.seen: list[dict[str, Any]] = []

    async def post(self, text: str, *, choice: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"session": self.session, "text": text}
        if choice is not None:
            body["choice"] = choice
        response = await self.client.post("/chat/api/messages", json=body)
        assert response.status_code == 202, response.text
        await self.app.state.lessonbot.settle()
        after = self.seen[-1]["id"] if self.seen else 0
        listed = await self.client.get("/chat/api/messages", params={"session": self.session, "after": after})
        new = listed.json()["replies"]
        self.seen += new
        return new

    async def say(self, text: str) -> list[str]:
        return [reply.get("text", "") for reply in await self.post(text)]

    async def press(self, label: str) -> list[str]:
        for reply in reversed(self.seen):
            for choice in reply.get("choices", ()):
                if choice["label"] == label:
                    return [r.get("text", "") for r in await self.post(label, choice=choice["value"])]
        raise AssertionError(f"no button {label!r}")


@pytest.fixture
async def learner(app: Starlette) -> AsyncIterator[WebLearner]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test") as client:
        created = await client.post("/chat/api/sessions")
        yield WebLearner(app, client, created.json()["session"])


async def onboard_on_the_free_course(learner: WebLearner, *, typed: bool = False) -> None:
    await learner.say("/start")
    consent = await (learner.say if typed else learner.press)("Yes, let's start")
    assert consent == ["What should I call you?"]
    await learner.say("Ann")
    await learner.say("Lisbon")
    await learner.press("Yes, that's right")
    await learner.press("Morning, 08:00")
    await learner.press("Every day")
    await learner.press("Spot the phish, five minutes a day")
    [done] = await learner.press("1 lesson (about 5 minutes)")
    assert done.startswith("All set, Ann!")


async def test_typed_labels_count_and_a_stray_number_is_told_the_options(learner):
    await onboard_on_the_free_course(learner, typed=True)
    [told] = await learner.say("2")
    assert told == "That's not one of the options. Choose one of these: “Start my first lesson”, “Later”."
    [part] = await learner.say("Start my first lesson")
    assert part.startswith("📘 Lesson 1 of 5")


async def test_a_forged_choice_opens_no_paid_lesson_and_earns_no_certificate(app, learner):
    await onboard_on_the_free_course(learner)
    db = app.state.lessonbot.db
    async with db.sessions() as session:
        paid = await session.scalar(select(Course).where(Course.slug == "passwords-that-hold"))
        last = await session.scalar(select(Lesson).where(Lesson.course_id == paid.id).order_by(Lesson.position.desc())
                                    .limit(1))
        question = await session.scalar(select(Question).where(Question.lesson_id == last.id)
                                        .order_by(Question.position.desc()).limit(1))
    replies = await learner.post("x", choice=f"quiz:{question.id}:x")
    assert [reply["text"] for reply in replies] == ["That button isn't available."]
    assert question.explanation not in replies[0]["text"]
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Certificate)) == 0
        assert await session.scalar(select(func.count()).select_from(QuestionCard)) == 0
        assert await session.scalar(select(func.count()).select_from(Enrollment).where(
            Enrollment.course_id == paid.id)) == 0
