"""Fixtures and helpers for the learning-conversation tests: a bot on a recording channel with the sample course."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from authoring.format import load_course
from authoring.importer import import_course
from bot.core import Lessonbot
from bot.messages import Text
from storage.courses import Question
from storage.learners import Learner
from storage.models import ChannelIdentity, User
from tests.support import RecordingChannel, Transcript

COURSES = Path(__file__).resolve().parents[2] / "courses"
SAMPLE = COURSES / "sample"
PAID = COURSES / "examples" / "passwords"  # the first lesson free, the rest with an entitlement


async def import_sample(bot: Lessonbot, folder: Path = SAMPLE) -> None:
    async with bot.db.transaction() as session:
        await import_course(session, load_course(folder))


@pytest.fixture
async def learning_bot(settings):
    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel])
    await import_sample(bot)
    yield bot, channel
    await bot.stop()


class Learning(Transcript):
    """A transcript that also presses buttons by label and returns whole replies (text and choices)."""

    async def press(self, label: str) -> list[str]:
        """Press the button labelled `label` on the newest reply that has it."""
        for reply in reversed(self.channel.sent[self.chat]):
            if isinstance(reply, Text):
                for choice in reply.choices:
                    if choice.label == label:
                        return await self.say(choice.label, choice=choice.value)
        raise AssertionError(f"no button {label!r} in {self.channel.texts(self.chat)[-3:]}")

    def last(self) -> Text:
        return next(r for r in reversed(self.channel.sent[self.chat]) if isinstance(r, Text))

    def labels(self) -> list[str]:
        return [c.label for c in self.last().choices]


async def learner_row(bot: Lessonbot, channel: str, chat: str) -> tuple[User, Learner]:
    async with bot.db.sessions() as session:
        identity = await session.scalar(
            select(ChannelIdentity).where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == chat)
        )
        user = await session.get(User, identity.user_id)
        learner = await session.get(Learner, identity.user_id)
        return user, learner


async def onboard(t: Learning, *, zone: str = "Lisbon", at: str = "08:00", days: str = "Every day",
                  course: str = "Spot the phish, five minutes a day") -> None:
    """The shortest onboarding: agree, keep the name, a zone, a time, days, the sample course, one lesson a day."""
    await t.say("/start")
    await t.press("Yes, let's start")
    await t.say("Ann")
    await t.say(zone)
    await t.press("Yes, that's right")
    await t.say(at)
    await t.press(days)
    await t.press(course)
    await t.press("1 lesson (about 5 minutes)")


async def answer_until(t: Learning, bot: Lessonbot, stop: str, *, right: bool = True) -> None:
    """Go on through lessons answering every question right (or, with `right=False`, wrong) until a reply starts
    with `stop`."""
    async with bot.db.sessions() as session:
        questions = {q.id: q for q in await session.scalars(select(Question))}
    for _turn in range(200):
        last = t.last()
        if last.text.startswith(stop):
            return
        if last.text.endswith("(Type your answer.)"):
            asked = next(q for q in questions.values() if q.prompt in last.text)
            await t.say(asked.accepted_answers[0] if right else "something else entirely")
        elif last.choices and last.choices[0].value.startswith("quiz:"):
            qid = int(last.choices[0].value.split(":")[1])
            question = questions[qid]
            if question.kind == "choice":
                value = last.choices[question.correct_choice if right else (question.correct_choice + 1) % 2].value
            else:
                value = f"quiz:{qid}:{str(question.is_true == right).lower()}"
            await t.say("pressed", choice=value)
        elif "More now" in t.labels():
            await t.press("More now")
        else:
            await t.say("/next")
    raise AssertionError(f"no reply starting with {stop!r}")


async def at_the_first_quiz_question(bot: Lessonbot, channel: RecordingChannel, tmp_path: Path, *,
                                     pass_mark: int | None = None) -> tuple[Learning, Path]:
    """Ann at the first quiz question of a copy of the sample course ("Authority", "Urgency", "Reward"), imported
    (with `pass_mark` when given); she, and the copy's folder (for its author to change and import again)."""
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    if pass_mark is not None:
        yaml = (folder / "course.yaml").read_text()
        (folder / "course.yaml").write_text(yaml.replace("\nmodules:", f"\npass_mark: {pass_mark}\n\nmodules:", 1))
    await import_sample(bot, folder)
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    while not t.last().choices[0].value.startswith("quiz:"):
        await t.press(t.last().choices[0].label)
    return t, folder
