"""What a platform reports of a person is not their activity: only what they wrote (a message, a button pressed) is.
On Telegram, through the webhook: the bot unblocked, a group become a supergroup, the bot's membership of it changed
by a learner who is its admin, and that learner removed from it by another admin leave her as idle as she was (the
nudges' days away, her streak, the planner's "did she answer her last lesson"), and her come-back nudge comes as
due. On WhatsApp, Twilio's status callbacks are not the learner writing either. And a report about a chat itself
(the bot's rights there, a group moved) makes nobody known: the admin who made the change, if they never wrote, is
not stored."""

from __future__ import annotations

import itertools
import random
import time as clock_time
from collections import Counter
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from scheduler.nudges import sweep
from scheduler.planner import next_lesson_after
from standins.telegram import (
    TOKEN,
    bot_member_update,
    left_member_update,
    person,
)
from standins.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, TwilioStandIn
from storage.learners import Learner, wrote_after
from storage.models import ChannelIdentity, Conversation, User, utcnow
from storage.models import InboundMessage as InboundRow
from tests.dialogs.learning_support import import_sample
from tests.scheduler.nudge_support import nudges_of
from tests.scheduler.support import HandClock, context
from tests.scheduler.telegram_support import SECRET, OnTelegram, onboard_on_telegram
from tests.support import (
    running,
    standin,  # noqa: F401 (the fixture)
    whatsapp_app,
)

GROUP, SUPERGROUP = -4012345, -1001234567890
_message_ids = itertools.count(900_000)


def group_moved(by: dict) -> dict:
    """The service message that opens a supergroup made of GROUP, sent by whoever converted it (`by`)."""
    return {"update_id": next(_message_ids), "message": {
        "message_id": next(_message_ids), "date": int(clock_time.time()), "from": by,
        "chat": {"id": SUPERGROUP, "type": "supergroup", "title": "Study group"}, "migrate_from_chat_id": GROUP}}


@pytest.fixture
def telegram_settings(settings, standin):
    return settings.model_copy(update={
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": SECRET,
        "telegram_api_base_url": standin.base_url, "web_chat_enabled": False,
    })


async def test_what_telegram_reports_of_an_idle_learner_leaves_her_idle_and_her_nudge_comes(telegram_settings, standin):
    """Ann learns in her private chat with the bot and has written in a study group too, of which she is an admin.
    She has been away three days, with a streak kept until yesterday. Meanwhile she unblocks the bot in her chat,
    the group becomes a supergroup (her doing), she makes the bot an admin there, and Ada, another admin, removes
    her from it: Telegram reports each, and none is Ann writing. Her last activity, her streak and when she last
    wrote in her chat stay as they were; nothing of hers since counts as an answer to a lesson pushed as she was
    last here; at two in the afternoon her three-day come-back nudge is due. Her own message afterwards is her
    activity again."""
    ann, ada = person(42, "Ann"), person(44, "Ada")
    async with running(telegram_settings, clock=False) as (client, lessonbot):
        await import_sample(lessonbot)
        own = OnTelegram(client, standin, ann, 42)
        await onboard_on_telegram(own)
        in_group = OnTelegram(client, standin, ann, GROUP)
        await in_group.say("/help")
        moment = next_lesson_after(utcnow(), zone=ZoneInfo("Europe/Lisbon"), at=time(14), days="1234567")
        away = moment - timedelta(days=3, hours=1)
        yesterday = (moment - timedelta(days=1)).astimezone(ZoneInfo("Europe/Lisbon")).date()
        async with lessonbot.db.transaction() as session:
            user_id = await session.scalar(select(ChannelIdentity.user_id).where(
                ChannelIdentity.channel == "telegram", ChannelIdentity.external_id == "42"))
            await session.execute(update(User).where(User.id == user_id).values(last_active_at=away))
            await session.execute(update(Learner).where(Learner.user_id == user_id).values(
                streak_days=4, best_streak=4, last_active_on=yesterday))
            await session.execute(update(Conversation).where(Conversation.chat_id == "42")
                                  .values(last_inbound_at=away))
            await session.execute(update(InboundRow).values(received_at=away - timedelta(minutes=5)))

        await own.post(bot_member_update(42, "member", by=ann, was="kicked"))  # (she had blocked the bot)
        await own.post(group_moved(by=ann))
        await own.post(bot_member_update(SUPERGROUP, "administrator", by=ann))
        await own.post(left_member_update(SUPERGROUP, ann, by=ada))
        await lessonbot.settle()

        async with lessonbot.db.sessions() as session:
            user = await session.get(User, user_id)
            learner = await session.get(Learner, user_id)
            home = await session.scalar(select(Conversation).where(Conversation.chat_id == "42"))
            assert user.last_active_at == away
            assert (learner.streak_days, learner.best_streak, learner.last_active_on) == (4, 4, yesterday)
            assert home.last_inbound_at == away
            assert learner.home_conversation_id == home.id
            # (a lesson pushed to her chat as she was last here is not answered by what Telegram reported since)
            assert not await wrote_after(session, user, home.id, away)
        ctx = context(lessonbot.db, HandClock(moment), rng=random.Random(7))
        assert await sweep(ctx) == Counter({"inactive": 1})
        assert await nudges_of(lessonbot.db, user_id) == [("inactive", 1, "queued")]

        await own.say("/progress")
        async with lessonbot.db.sessions() as session:
            assert (await session.get(User, user_id)).last_active_at > away + timedelta(days=1)


async def test_twilios_status_callbacks_are_not_the_learner_writing_on_whatsapp(settings):
    """Ann wrote on WhatsApp two days ago. Twilio then reports her reply delivered and read (to the status callback,
    and once to the messaging webhook, as a misconfigured number does): neither is Ann writing, so her last activity
    and when she last wrote (WhatsApp's 24-hour window) stay as they were, and no message of hers is recorded."""
    number = "+15551234567"
    async with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as twilio, whatsapp_app(settings, twilio) as (app, webhooks):
        lessonbot = app.state.lessonbot
        await webhooks.message(number, "/help")
        await lessonbot.settle()
        [sent] = twilio.sent
        away = utcnow() - timedelta(days=2)
        async with lessonbot.db.transaction() as session:
            await session.execute(update(User).values(last_active_at=away))
            await session.execute(update(Conversation).values(last_inbound_at=away))
        for status in ("delivered", "read"):
            assert (await webhooks.status(sent.sid, status)).status_code == 200
        status_form = {"AccountSid": ACCOUNT_SID, "From": SENDER, "To": f"whatsapp:{number}",
                       "MessageSid": sent.sid, "MessageStatus": "read", "SmsStatus": "read"}
        assert (await webhooks.post("/webhooks/twilio/whatsapp", status_form)).status_code == 200
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            assert await session.scalar(select(User.last_active_at)) == away
            assert await session.scalar(select(Conversation.last_inbound_at)) == away
            assert await session.scalar(select(func.count()).select_from(InboundRow)) == 1


async def test_whoever_adds_the_bot_to_a_group_or_moves_the_group_is_not_made_known(telegram_settings, standin):
    """Ann writes to the bot in a study group. Ada, an admin who never wrote to the bot, makes it an admin there and
    turns the group into a supergroup: the bot may send there and follows the group, and keeps nothing of Ada (no
    identity, no user); the supergroup's chat is nobody's until someone writes there."""
    ann, ada = person(42, "Ann"), person(44, "Ada")
    async with running(telegram_settings, clock=False) as (client, lessonbot):
        in_group = OnTelegram(client, standin, ann, GROUP)
        await in_group.say("/help")
        await in_group.post(bot_member_update(GROUP, "administrator", by=ada))
        await in_group.post(group_moved(by=ada))
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            assert set(await session.scalars(select(ChannelIdentity.external_id))) == {"42"}
            assert await session.scalar(select(func.count()).select_from(User)) == 1
            moved = await session.scalar(select(Conversation).where(Conversation.chat_id == str(SUPERGROUP)))
            assert (moved.user_id, moved.shared) == (None, True)
        in_supergroup = OnTelegram(client, standin, ann, SUPERGROUP)
        [help_text, *_] = await in_supergroup.say("/help")
        assert help_text
