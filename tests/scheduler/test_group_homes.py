"""Learners whose home chat is a group (they set up their lessons there and have no chat of their own with the bot):
an erased one's queued lesson is withheld, an announcement reaches the group once however many call it home, a
group that became a supergroup (another chat id) is followed there, and a lesson pushed there names its learner and
offers its buttons to them alone (on Telegram, through the webhook); a learner who leaves that group has no home
there any more, and is told in their private chat how to pick another."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot.cli import main
from bot.core import Lessonbot
from bot.messages import MEMBERSHIP, MOVED_FROM, PLATFORM_REPORT, InboundMessage, Text
from scheduler.broadcast import fan_out
from scheduler.planner import next_lesson_after, plan_lessons
from standins.telegram import (
    BOT_USERNAME,
    TOKEN,
    Fault,
    bot_member_update,
    left_member_update,
    person,
    text_update,
)
from storage.courses import Enrollment, QuestionCard
from storage.learners import Learner
from storage.models import ChannelIdentity, Conversation, OutboxMessage, utcnow
from storage.models import InboundMessage as InboundRow
from tests.dialogs.learning_support import Learning, import_sample, learner_row, learning_bot, onboard  # noqa: F401
from tests.scheduler.support import HandClock, context
from tests.scheduler.telegram_support import SECRET, OnTelegram, onboard_on_telegram
from tests.support import (
    running,
    shown,
    standin,  # noqa: F401 (the fixture)
)

_ids = itertools.count(1)


@dataclass
class Member(Learning):
    """Someone writing in a chat of many (`chat`) as `sender`."""

    sender: str = "ann"

    async def say(self, text: str, *, choice: str | None = None) -> list[str]:
        before = len(self.channel.sent[self.chat])
        await self.bot.receive(InboundMessage(channel=self.channel.name, platform_id=f"group-{next(_ids)}",
                                              chat_id=self.chat, sender_id=self.sender, text=text, choice=choice,
                                              sender_name=self.sender.title()))
        await self.bot.settle()
        return [shown(r) for r in self.channel.sent[self.chat][before:] if isinstance(r, Text)]


async def cli(monkeypatch, settings, *argv: str) -> int:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    return await asyncio.to_thread(main, list(argv))


async def queue_lessons_at_their_hour(bot: Lessonbot, *, days_later: int = 0, **more: object) -> int:
    """The planner run just before and just after the learners' hour (8:00 in Lisbon, every day; `days_later` days
    after the next one), with `more` for its context (a dispatcher to tell): the number of lessons it queued at the
    hour."""
    moment = next_lesson_after(utcnow() + timedelta(days=days_later), zone=ZoneInfo("Europe/Lisbon"), at=time(8),
                               days="1234567")
    clock = HandClock(moment - timedelta(minutes=1))
    jobs = context(bot.db, clock, **more)
    await plan_lessons(jobs)
    clock.move(minutes=2)
    return (await plan_lessons(jobs))["queued"]


async def test_an_erased_learners_lesson_queued_to_their_group_home_is_withheld(learning_bot, settings, monkeypatch):
    """Ann's home is a group Bob writes in too. The planner queues her lesson there; she is erased before it goes:
    it is cancelled and blanked, its key given up (docs/data.md), and never reaches the group."""
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await bob.say("hello all")
    # (no dispatcher told: the lesson waits in the outbox, as behind a busy one)
    assert await queue_lessons_at_their_hour(bot) == 1
    assert await cli(monkeypatch, settings, "learner", "erase", "test:ann", "--yes") == 0
    async with bot.db.sessions() as session:
        rows = list(await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == "grp")))
    lessons = [row for row in rows if row.last_error == "not sent: the person's data was erased"]
    assert [(row.status, row.payload.get("text"), row.idempotency_key) for row in lessons] == [("cancelled", "", None)]
    await bot.settle()
    assert not [text for text in channel.texts("grp") if text.startswith("📘 Lesson")]


async def test_an_announcement_reaches_a_group_once_however_many_call_it_home(learning_bot, settings, monkeypatch):
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await onboard(bob)
    assert await cli(monkeypatch, settings, "broadcast", "send", "--everyone", "--text", "New lessons are out!",
                     "--yes") == 0
    await fan_out(context(bot.db, HandClock(utcnow())))
    await bot.settle()
    assert channel.texts("grp").count("New lessons are out!") == 1


async def test_a_group_become_a_supergroup_is_followed_there_with_its_learners_and_what_waits_for_it(learning_bot):
    """Ann's home is a group. Her lesson is queued there while the dispatcher is away; the group becomes a supergroup
    (Telegram's report: a message in the new chat naming the old one). The lesson goes to the supergroup, her next
    ones are planned there, and the buttons the group was offered still work there (its history shows them)."""
    bot, channel = learning_bot
    ann = Member(bot, channel, chat="grp", sender="ann")
    await onboard(ann)
    assert await queue_lessons_at_their_hour(bot) == 1  # (no dispatcher told: the lesson waits in the outbox)
    await bot.receive(InboundMessage(channel=channel.name, platform_id=f"group-{next(_ids)}", chat_id="-100grp",
                                     sender_id="ann", text="", meta={PLATFORM_REPORT: True, MOVED_FROM: "grp"}))
    await bot.settle()
    assert not [text for text in channel.texts("grp") if text.startswith("📘 Lesson")]
    [lesson] = [reply for reply in channel.sent["-100grp"] if isinstance(reply, Text)]
    assert shown(lesson).startswith("For Ann:\n📘 Lesson 1")
    async with bot.db.sessions() as session:
        home = await session.scalar(select(Conversation.chat_id).join(
            Learner, Learner.home_conversation_id == Conversation.id))
    assert home == "-100grp"
    supergroup = Member(bot, channel, chat="-100grp", sender="ann")
    pressed = await supergroup.say(lesson.choices[0].label, choice=lesson.choices[0].value)
    assert pressed and pressed[0] != "That button isn't available."



async def test_a_lesson_queued_to_a_group_home_its_learner_left_is_withdrawn_and_their_place_kept(learning_bot):
    """Ann's home is a group; her lesson at her hour is queued there and not sent yet when she leaves the group. It is
    withdrawn, not sent there, and her place is put back: her /next in her own chat brings that lesson from its
    start, and makes her chat her home."""
    bot, channel = learning_bot
    ann = Member(bot, channel, chat="grp", sender="ann")
    await onboard(ann)
    assert await queue_lessons_at_their_hour(bot) == 1  # (no dispatcher told: the lesson waits in the outbox)
    await bot.receive(InboundMessage(channel=channel.name, platform_id=f"group-{next(_ids)}", chat_id="grp",
                                     sender_id="ann", meta={PLATFORM_REPORT: True, MEMBERSHIP: "left"}))
    await bot.settle()
    async with bot.db.sessions() as session:
        lesson = await session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("lesson:%")))
    assert (lesson.status, lesson.last_error) == ("cancelled", "not sent: the learner left the group, their home")
    assert not [text for text in channel.texts("grp") if "📘 Lesson" in text]
    own = Member(bot, channel, chat="ann", sender="ann")
    [part, *_rest] = await own.say("/next")
    assert part.startswith("📘 Lesson 1") and "(1/" in part
    _user, learner = await learner_row(bot, "test", "ann")
    async with bot.db.sessions() as session:
        assert (await session.get(Conversation, learner.home_conversation_id)).chat_id == "ann"

async def test_a_quiz_pushed_to_a_group_home_is_its_learners_and_leaves_another_members_quiz_open(learning_bot):
    """Ann and Bob both learn in one group, their home. Bob takes his first quiz; Ann has read the first lesson's parts
    and her lesson at her hour brings her its quiz. Bob's quiz stays open and his typed answer goes to it, not to
    Ann's question; Ann's typed answer is graded on her own quiz."""
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await onboard(bob)
    for member in (ann, bob):
        for _part in range(3):
            await member.say("/next")
    _intro, question = await bob.say("/next")
    assert question.startswith("Question 1 of 3\n")
    assert await queue_lessons_at_their_hour(bot, notify=bot.dispatcher.notify) == 2
    await bot.settle()
    assert [text for text in channel.texts("grp") if text.startswith("Question 1 of 3\n")][-2:] == [question] * 2
    [feedback, following] = await bob.say("a")  # Authority: wrong, on his own question
    assert feedback.startswith("❌ Not quite.") and following.startswith("Question 2 of 3\n")
    [feedback, following] = await ann.say("b")  # Urgency: right, on hers
    assert feedback.startswith("✅ Right!") and following.startswith("Question 2 of 3\n")
    async with bot.db.sessions() as session:
        cards = list(await session.execute(select(ChannelIdentity.external_id, QuestionCard.correct).join(
            QuestionCard, QuestionCard.user_id == ChannelIdentity.user_id)))
    assert sorted(cards) == [("ann", 1), ("bob", 0)]


async def test_one_member_pausing_holds_their_own_lesson_in_a_shared_home_not_anothers(learning_bot):
    """Ann and Bob both learn in one group, their home, and each has a lesson queued there at their hour. Ann's
    /pause holds hers; Bob's still goes. Bob paused with his held, Ann's /resume lets hers go, not his."""
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await onboard(bob)
    assert await queue_lessons_at_their_hour(bot) == 2  # (no dispatcher told: the lessons wait in the outbox)
    users = {name: (await learner_row(bot, "test", name))[0].id for name in ("ann", "bob")}

    async def lessons() -> dict[str, str]:
        async with bot.db.sessions() as session:
            return {name: await session.scalar(select(OutboxMessage.status).where(
                OutboxMessage.idempotency_key.like(f"lesson:{uid}:%"))) for name, uid in users.items()}

    await ann.say("/pause")
    assert await lessons() == {"ann": "waiting", "bob": "sent"}
    async with bot.db.transaction() as session:  # as when Bob paused before his went: held for him
        await session.execute(update(OutboxMessage).values(status="waiting")
                              .where(OutboxMessage.idempotency_key.like(f"lesson:{users['bob']}:%")))
        await session.execute(update(Learner).where(Learner.user_id == users["bob"]).values(status="paused"))
    await ann.say("/resume")
    assert await lessons() == {"ann": "sent", "bob": "waiting"}


async def test_a_lesson_held_for_a_member_whose_pause_ran_out_goes_when_they_write_though_another_is_paused(
        learning_bot):
    """Ann and Bob both learn in one group, their home. Ann is paused. Bob's lesson was held for his own pause, which
    has run out: his next message lets it go, Ann's pause notwithstanding; hers stays held."""
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await onboard(bob)
    assert await queue_lessons_at_their_hour(bot) == 2  # (no dispatcher told: the lessons wait in the outbox)
    bob_id = (await learner_row(bot, "test", "bob"))[0].id
    async with bot.db.transaction() as session:  # both paused before theirs went: held; Bob's pause has run out
        await session.execute(update(OutboxMessage).values(status="waiting")
                              .where(OutboxMessage.idempotency_key.like("lesson:%")))
        await session.execute(update(Learner).values(status="paused"))
        await session.execute(update(Learner).where(Learner.user_id == bob_id)
                              .values(paused_until=utcnow() - timedelta(minutes=1)))
    replies = await bob.say("hello all")
    assert [reply for reply in replies if "\n📘 Lesson 1" in reply]
    async with bot.db.sessions() as session:
        held = (await session.execute(select(OutboxMessage.idempotency_key).where(
            OutboxMessage.status == "waiting"))).scalars().all()
    assert held and not [key for key in held if key.startswith(f"lesson:{bob_id}:")]



async def test_a_members_typed_words_of_another_learners_pushed_lesson_are_their_own_command(learning_bot):
    """Ann's home is a group Cy writes in too. Her lesson comes at her hour, its Next and Later hers alone. Cy then
    types "later" and "next": the words of her buttons, not buttons offered to him, so they are his own /later and
    /next, answered as his (he has no lessons yet), not refused as a button not his."""
    bot, channel = learning_bot
    ann, cy = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="cy")
    await onboard(ann)
    await cy.say("/help")
    assert await queue_lessons_at_their_hour(bot, notify=bot.dispatcher.notify) == 1
    await bot.settle()
    assert await cy.say("later") == ["OK, your place is saved. Send /next whenever you're ready."]
    assert (await cy.say("next"))[0] == "First, let's set you up: it takes a minute."

# On Telegram: a group that is a learner's home, through the webhook and python-telegram-bot ---------------------------

GROUP = -1001234567890


@dataclass
class TelegramMember(OnTelegram):
    """Someone in the Telegram group GROUP, writing to the bot as Telegram delivers it (a command, a mention) and
    pressing buttons under the bot's messages there."""

    chat: int = GROUP

    async def say(self, text: str) -> list[str]:
        """`text` to the bot in the group: a command as it is, anything else with the bot's name before it."""
        return await super().say(text if text.startswith("/") else f"@{BOT_USERNAME} {text}")


@pytest.fixture
def telegram_settings(settings, standin):
    return settings.model_copy(update={
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": SECRET,
        "telegram_api_base_url": standin.base_url, "web_chat_enabled": False,
    })


async def test_a_lesson_pushed_to_a_group_home_offers_its_buttons_to_its_learner_alone(telegram_settings, standin):
    """Ann's home is a Telegram group Bob writes in too. Her lesson comes at her hour with Next and Later: Bob's press
    of either is refused as a button not offered to him (nothing of Ann's or his own moves), and Ann's own Next
    brings her the lesson's next part."""
    ann, bob = person(42, "Ann"), person(43, "Bob")
    async with running(telegram_settings, clock=False) as (client, lessonbot):
        await import_sample(lessonbot)
        her, him = TelegramMember(client, standin, ann), TelegramMember(client, standin, bob)
        await onboard_on_telegram(her)
        await him.say("/help")
        assert await queue_lessons_at_their_hour(lessonbot, notify=lessonbot.dispatcher.notify) == 1
        await standin.wait_for(lambda: standin.texts(GROUP)[-1].startswith("For Ann:\n📘 Lesson 1"))
        assert await him.press("Next ▸") == ["That button isn't available."]
        assert await him.press("Later") == ["That button isn't available."]
        [part] = await her.press("Next ▸")
        assert "(2/" in part


async def test_lessons_pushed_to_a_group_home_name_whose_each_is(telegram_settings, standin):
    """Ann and Bob both learn in one Telegram group, their home, at the same hour. Their lessons come there one after
    the other, alike but for whose they are: each begins with its learner's name (typed by them: shown as typed), so
    each knows which Next is theirs."""
    ann, bob = person(42, "Ann"), person(43, "B*b")
    async with running(telegram_settings, clock=False) as (client, lessonbot):
        await import_sample(lessonbot)
        for member in (TelegramMember(client, standin, ann), TelegramMember(client, standin, bob)):
            await onboard_on_telegram(member)
        assert await queue_lessons_at_their_hour(lessonbot, notify=lessonbot.dispatcher.notify) == 2
        await standin.wait_for(lambda: len([text for text in standin.texts(GROUP) if "📘 Lesson 1" in text]) == 2)
    lessons = [text for text in standin.texts(GROUP) if "📘 Lesson 1" in text]
    assert [text.split("\n", 1)[0] for text in lessons] == ["For Ann:", "For B*b:"]
    assert all(text.split("\n", 1)[1].startswith("📘 Lesson 1 of 5") for text in lessons)


async def home_of(lessonbot: Lessonbot, sender: str) -> str | None:
    """The chat id of the Telegram learner `sender`'s home, or None."""
    async with lessonbot.db.sessions() as session:
        return await session.scalar(
            select(Conversation.chat_id).join(Learner, Learner.home_conversation_id == Conversation.id)
            .join(ChannelIdentity, ChannelIdentity.user_id == Learner.user_id)
            .where(ChannelIdentity.channel == "telegram", ChannelIdentity.external_id == sender))


@asynccontextmanager
async def ann_and_bob_in_the_group(telegram_settings, standin) -> AsyncIterator[
        tuple[Lessonbot, TelegramMember, TelegramMember]]:
    """The bot running with Ann (42) and Bob (43) set up in the Telegram group GROUP, their home."""
    async with running(telegram_settings, clock=False) as (client, lessonbot):
        await import_sample(lessonbot)
        her = TelegramMember(client, standin, person(42, "Ann"))
        him = TelegramMember(client, standin, person(43, "Bob"))
        for member in (her, him):
            await onboard_on_telegram(member)
        yield lessonbot, her, him


async def test_a_learner_who_leaves_their_group_home_gets_no_more_lessons_there_and_is_told_once_privately(
        telegram_settings, standin):
    """Ann and Bob learn in one Telegram group, their home; Ann has a private chat with the bot too. Ann leaves the
    group (Telegram's "left" service message: the bot asks for no member's changes). Her home there ends: at the
    hour only Bob's lesson comes to the group. She is told once in her private chat how to have her lessons come
    elsewhere (leaving again, or the update delivered again, says nothing more), and her /next there makes it her
    home. Bob, removed by an admin, has no private chat: his home ends all the same, and nothing is said anywhere."""
    ann, bob, admin = person(42, "Ann"), person(43, "Bob"), person(44, "Ada")
    async with ann_and_bob_in_the_group(telegram_settings, standin) as (lessonbot, her, him):
        await her.post(text_update("/help", chat_id=42, user=ann))
        await standin.wait_for(lambda: len(standin.texts(42)) == 1)
        in_group = len(standin.texts(GROUP))
        left = left_member_update(GROUP, ann)
        await her.post(left)
        await standin.wait_for(lambda: len(standin.texts(42)) == 2)
        assert standin.texts(42)[1] == (
            "You are no longer in the group where your lessons came, so I no longer send them there. Send /next "
            "here, or in another group with me, and they come to that chat from then on.")
        await her.post(left)  # (delivered again)
        await her.post(left_member_update(GROUP, ann))  # (left again, after coming back)
        await him.post(left_member_update(GROUP, bob, by=admin))
        await lessonbot.settle()
        assert await home_of(lessonbot, "42") is None
        assert await home_of(lessonbot, "43") is None
        await him.post(text_update("/help", chat_id=GROUP, user=admin))  # (something to wait for)
        await standin.wait_for(lambda: len(standin.texts(GROUP)) > in_group)
        assert len(standin.texts(GROUP)) == in_group + 1
        assert await queue_lessons_at_their_hour(lessonbot, notify=lessonbot.dispatcher.notify) == 0
        await her.post(text_update("/next", chat_id=42, user=ann))
        await standin.wait_for(lambda: any("📘 Lesson 1" in text for text in standin.texts(42)))
        assert await home_of(lessonbot, "42") == "42"
    assert len(standin.texts(42)) == 3
    assert not [text for text in standin.texts(GROUP)[in_group:] if "📘 Lesson" in text]


async def test_someone_who_never_wrote_leaving_a_group_home_stores_nothing_of_them(telegram_settings, standin):
    """Ann learns in a Telegram group, her home. Cy, who never wrote to the bot, leaves the group, and Dee is removed
    from it: the updates are acknowledged, and nothing of either is kept (no identity, no message recorded); Ann's
    home stays."""
    ann, cy, dee = person(42, "Ann"), person(45, "Cy"), person(46, "Dee")
    async with running(telegram_settings, clock=False) as (client, lessonbot):
        await import_sample(lessonbot)
        her = TelegramMember(client, standin, ann)
        await onboard_on_telegram(her)
        await her.post(left_member_update(GROUP, cy))
        await her.post(left_member_update(GROUP, dee, by=ann))
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            people = set(await session.scalars(select(ChannelIdentity.external_id)))
            senders = set(await session.scalars(select(InboundRow.sender_id)))
        assert people == {"42"} and senders == {"42"}
        assert await home_of(lessonbot, "42") == str(GROUP)


async def test_a_group_that_removed_the_bot_unseen_gets_no_more_lessons_until_it_adds_the_bot_again(
        telegram_settings, standin):
    """Ann and Bob learn in one Telegram group, their home. Its admins remove the bot, and the group hides its join
    and leave messages: the bot learns it only when Telegram refuses its next lesson there (403 "bot was kicked from
    the group chat"). That lesson is set aside, the other one queued there withdrawn, and the group taken out of what
    the bot sends on its own: the next day no lesson is queued for it. Added again (Telegram's my_chat_member), the
    group has its learners' lessons again."""
    admin = person(44, "Ada")
    async with ann_and_bob_in_the_group(telegram_settings, standin) as (lessonbot, her, him):
        standin.refuse(GROUP, Fault(403, "Forbidden: bot was kicked from the group chat"))
        assert await queue_lessons_at_their_hour(lessonbot, notify=lessonbot.dispatcher.notify) == 2
        await standin.wait_for(lambda: standin.called("sendMessage", ok=False))
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            group = await session.scalar(select(Conversation).where(Conversation.chat_id == str(GROUP)))
            statuses = sorted(await session.scalars(select(OutboxMessage.status).where(
                OutboxMessage.conversation_id == group.id, OutboxMessage.status != "sent")))
        assert group.opted_out_at is not None and group.refused_by_platform
        assert statuses == ["dead", "suppressed"], statuses
        assert len(standin.called("sendMessage", ok=False)) == 1  # one refusal, no retries
        assert await queue_lessons_at_their_hour(lessonbot, days_later=1, notify=lessonbot.dispatcher.notify) == 0
        del standin.refused_chats[str(GROUP)]
        await her.post(bot_member_update(GROUP, "member", by=admin, was="left"))  # added again
        await lessonbot.settle()
        assert await queue_lessons_at_their_hour(lessonbot, days_later=2, notify=lessonbot.dispatcher.notify) == 2
        async with lessonbot.db.sessions() as session:
            lessons = list(await session.scalars(select(OutboxMessage.status).where(
                OutboxMessage.conversation_id == group.id, OutboxMessage.status.in_(("pending", "sending", "sent")),
                OutboxMessage.idempotency_key.like("lesson:%"))))
        assert len(lessons) == 2  # (the group's pace, 20 messages a minute, may hold the second a while)


async def places_of(lessonbot: Lessonbot) -> dict[int, tuple[int | None, int]]:
    """Every learner's place in their course: (lesson, part), by user id."""
    async with lessonbot.db.sessions() as session:
        rows = await session.execute(select(Enrollment.user_id, Enrollment.current_lesson_id, Enrollment.current_part))
        return {user_id: (lesson_id, part) for user_id, lesson_id, part in rows.all()}


async def test_a_lesson_the_group_never_saw_is_its_learners_next_when_the_bot_is_added_again(
        telegram_settings, standin):
    """Ann and Bob learn in one Telegram group, their home, which removed the bot unseen: Telegram refuses the day's
    lesson there (403), and the other one queued with it is never sent. Neither moves their place on: each learner's
    place stands where it stood before, and once the bot is added again their next lesson is the one the group never
    saw, not the part after it."""
    admin = person(44, "Ada")
    async with ann_and_bob_in_the_group(telegram_settings, standin) as (lessonbot, her, him):
        before = await places_of(lessonbot)
        standin.refuse(GROUP, Fault(403, "Forbidden: bot was kicked from the group chat"))
        assert await queue_lessons_at_their_hour(lessonbot, notify=lessonbot.dispatcher.notify) == 2
        await standin.wait_for(lambda: standin.called("sendMessage", ok=False))
        await lessonbot.settle()
        assert await places_of(lessonbot) == before
        async with lessonbot.db.sessions() as session:
            never_seen = {row.idempotency_key.split(":")[1]: row.payload for row in await session.scalars(
                select(OutboxMessage).where(OutboxMessage.status.in_(("dead", "suppressed")),
                                            OutboxMessage.idempotency_key.like("lesson:%")))}
        assert len(never_seen) == 2
        del standin.refused_chats[str(GROUP)]
        await her.post(bot_member_update(GROUP, "member", by=admin, was="left"))  # added again
        await lessonbot.settle()
        assert await queue_lessons_at_their_hour(lessonbot, days_later=2, notify=lessonbot.dispatcher.notify) == 2
        async with lessonbot.db.sessions() as session:
            pushed = {row.idempotency_key.split(":")[1]: row.payload for row in await session.scalars(
                select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending", "sent")),
                                            OutboxMessage.idempotency_key.like("lesson:%"),
                                            OutboxMessage.idempotency_key.not_like("%:%:%:%")))}
        assert pushed == never_seen
