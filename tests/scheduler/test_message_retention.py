"""How long messages are kept: the nightly prune deletes the messages people sent and the replies to them once they
are finished and older than MESSAGE_RETENTION_DAYS, in batches; what is still in line, or still read, stays; and a
platform's redelivery of a message within those days is still known for one."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from bot.config import ConfigError, load_settings
from bot.messages import Choice, Text
from bot.pipeline import record
from scheduler.clock import prune
from scheduler.context import JobContext
from standins.telegram import button_update, person, text_update
from storage.models import InboundMessage, InboundSequence, OfferedChoice, OutboxMessage, utcnow
from storage.outbox import OFFER_REFRESH, OutboxEntry, enqueue, follow_moved_chat
from storage.queries import get_or_create_conversation
from storage.retention import FEWEST_MESSAGE_DAYS, MESSAGE_DAYS, prune_history
from tests.channels.test_telegram_webhook import CHAT, post, telegram_settings  # noqa: F401 (the fixture)
from tests.channels.test_whatsapp_webhooks import ANN, INBOUND, twilio  # noqa: F401 (the fixture)
from tests.support import message, running, standin, whatsapp_app  # noqa: F401 (the fixture)

DAYS = 75  # MESSAGE_RETENTION_DAYS in these tests: neither the default nor the fewest


def _at(days: float) -> timedelta:
    return timedelta(days=days)


async def _messages_and_replies(db, now: datetime) -> int:
    """A conversation's messages and replies, each side of DAYS, in every status; its id."""
    old, recent = now - _at(DAYS) - timedelta(hours=1), now - _at(DAYS) + timedelta(hours=1)
    async with db.transaction() as session:
        conversation = await get_or_create_conversation(session, "test", "ann")
        session.add(InboundSequence(conversation_id=conversation, last_seq=7))

        def said(platform_id: str, status: str, at: datetime, seq: int) -> InboundMessage:
            row = InboundMessage(channel="test", platform_id=platform_id, conversation_id=conversation, seq=seq,
                                 sender_id="ann", payload={"text": platform_id}, status=status, received_at=at,
                                 processed_at=None if status == "pending" else at)
            session.add(row)
            return row

        said("old-done", "done", old, 1)
        said("old-failed", "failed", old, 2)
        said("old-pending", "pending", old, 3)
        said("recent-done", "done", recent, 4)
        waited_for = said("old-answered-by-a-waiting-reply", "done", old, 5)
        answered_lately = said("old-answered-lately", "done", old, 6)
        answered_long_ago = said("old-answered-long-ago", "done", old, 7)
        await session.flush()

        def reply(text: str, status: str, created: datetime, *, sent: datetime | None = None,
                  answers: InboundMessage | None = None, key: str | None = None) -> None:
            session.add(OutboxMessage(conversation_id=conversation, channel="test", chat_id="ann",
                                      payload={"text": text}, status=status, created_at=created, sent_at=sent,
                                      inbound_message_id=answers.id if answers else None, idempotency_key=key))

        for status in ("cancelled", "dead", "suppressed"):
            reply(f"old {status}", status, old)
        reply("old sent", "sent", old, sent=old)
        reply("old reply sent long ago", "sent", old, sent=old, answers=answered_long_ago)
        # what stays: in line, being sent, set aside (a lesson's key with it), sent lately, finished lately
        reply("old pending", "pending", old)
        reply("old sending", "sending", old)
        reply("old lesson waiting for the window", "waiting", old, answers=waited_for, key="lesson:5:2026-01-01")
        reply("queued long ago, sent lately", "sent", old, sent=recent, answers=answered_lately)
        reply("recent cancelled", "cancelled", recent)
    return conversation


async def _texts(db) -> tuple[set[str], set[str]]:
    async with db.sessions() as session:
        said = set(await session.scalars(select(InboundMessage.platform_id)))
        replies = set(await session.scalars(select(OutboxMessage.payload["text"].as_string())))
    return said, replies


async def test_finished_messages_and_replies_past_their_days_go_in_batches_and_the_rest_stays(db):
    now = utcnow()
    conversation = await _messages_and_replies(db, now)

    kept_longer = await prune_history(db, now, batch=2)  # the default days keep them all
    assert (kept_longer["outbox_messages"], kept_longer["inbound_messages"]) == (0, 0)

    pruned = await prune(JobContext(db=db, now=lambda: now, message_days=DAYS), batch=2)

    assert (pruned["outbox_messages"], pruned["inbound_messages"]) == (5, 3)
    said, replies = await _texts(db)
    assert said == {"old-pending", "recent-done", "old-answered-by-a-waiting-reply", "old-answered-lately"}
    assert replies == {"old pending", "old sending", "old lesson waiting for the window",
                       "queued long ago, sent lately", "recent cancelled"}
    async with db.sessions() as session:  # the waiting lesson keeps its key, and its reply its message
        waiting = await session.scalar(select(OutboxMessage).where(OutboxMessage.status == "waiting"))
        assert waiting.idempotency_key == "lesson:5:2026-01-01" and waiting.inbound_message_id is not None
        # the conversation's arrival numbers go on from where they were
        assert await session.scalar(select(InboundSequence.last_seq)
                                    .where(InboundSequence.conversation_id == conversation)) == 7
    again = await prune(JobContext(db=db, now=lambda: now, message_days=DAYS), batch=2)
    assert (again["outbox_messages"], again["inbound_messages"]) == (0, 0)

    # a redelivery of a message kept is known; the next message comes after every earlier one
    assert (await record(db, message("again", platform_id="recent-done"))).duplicate
    fresh = await record(db, message("hello", platform_id="new-one"))
    async with db.sessions() as session:
        assert await session.scalar(select(InboundMessage.seq).where(InboundMessage.id == fresh.inbound_id)) > 7


async def _stored(lessonbot) -> int:
    async with lessonbot.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(InboundMessage))


async def _prune_at(lessonbot, when: datetime) -> dict[str, int]:
    """The nightly prune as the app's clock runs it (MESSAGE_RETENTION_DAYS=DAYS), on the night of `when`."""
    assert lessonbot.clock.context.message_days == DAYS
    return await prune(replace(lessonbot.clock.context, now=lambda: when))


async def test_a_telegram_update_redelivered_after_the_prune_within_the_days_kept_is_answered_once(
        telegram_settings, standin):
    update = text_update("/help")
    kept_days = telegram_settings.model_copy(update={"message_retention_days": DAYS, "knowledge_cache_seconds": 3600})
    async with running(kept_days, clock=False) as (client, lessonbot):
        assert (await post(client, update)).status_code == 200
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        received = utcnow()
        assert lessonbot.clock.context.answers_kept == timedelta(hours=1)  # (KNOWLEDGE_CACHE_SECONDS)

        # the last night of the days kept: the message and its reply stay, and a redelivery is known
        pruned = await _prune_at(lessonbot, received + _at(DAYS) - timedelta(minutes=5))
        assert (pruned["inbound_messages"], pruned["outbox_messages"]) == (0, 0)
        assert (await post(client, update)).status_code == 200
        await lessonbot.settle()
        assert len(standin.texts(CHAT)) == 1 and await _stored(lessonbot) == 1

        # the night after: both go
        pruned = await _prune_at(lessonbot, received + _at(DAYS) + timedelta(minutes=5))
        assert (pruned["inbound_messages"], pruned["outbox_messages"]) == (1, 1)
        assert await _stored(lessonbot) == 0


async def test_a_whatsapp_message_sid_redelivered_after_the_prune_within_the_days_kept_is_answered_once(
        settings, twilio):
    async with whatsapp_app(settings.model_copy(update={"message_retention_days": DAYS}), twilio) as (app, webhooks):
        lessonbot = app.state.lessonbot
        form = webhooks.message_form(ANN, "/help", sid="SM" + "e" * 32)
        assert (await webhooks.post(INBOUND, form)).status_code == 200
        await lessonbot.settle()
        received = utcnow()
        pruned = await _prune_at(lessonbot, received + _at(DAYS) - timedelta(minutes=5))
        assert pruned["inbound_messages"] == 0
        assert (await webhooks.post(INBOUND, form)).status_code == 200
        await lessonbot.settle()
        assert await _stored(lessonbot) == 1
    assert len(twilio.sent) == 1


@pytest.mark.parametrize("days", ["7", str(FEWEST_MESSAGE_DAYS - 1), "0", "-90"])
def test_fewer_days_than_the_readers_need_stop_start_up_with_one_line(days):
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, message_retention_days=days)
    assert str(caught.value).splitlines() == [
        "Configuration error:",
        f"  MESSAGE_RETENTION_DAYS: Value error, expected {FEWEST_MESSAGE_DAYS} days or more: an announcement's "
        "progress, the dashboard's daily figures and the recognition of a platform's redelivery read the messages "
        f"and replies that long (got '{days}')",
    ]
    assert load_settings(_env_file=None).message_retention_days == MESSAGE_DAYS == 90


def test_the_fewest_days_cover_every_reader():
    from scheduler.nudges import UNDELIVERED_AFTER
    from storage.dashboard import DAYS as DASHBOARD_DAYS
    from storage.retention import BROADCAST_RECIPIENT_DAYS

    assert FEWEST_MESSAGE_DAYS >= BROADCAST_RECIPIENT_DAYS  # an announcement's progress counts its copies
    assert FEWEST_MESSAGE_DAYS > DASHBOARD_DAYS  # each day's first count reads the last 30 days again
    assert timedelta(days=FEWEST_MESSAGE_DAYS) > UNDELIVERED_AFTER  # a reminder is settled by its reply's status
    assert FEWEST_MESSAGE_DAYS > 3  # Stripe redelivers an event for 3 days, Telegram an update for 1


async def _offered(lessonbot) -> set[tuple[str, str]]:
    async with lessonbot.db.sessions() as session:
        return set(await session.execute(select(OfferedChoice.member, OfferedChoice.value)))


async def _aged(lessonbot, days: float) -> None:
    """Everything stored so far happened `days` earlier: the replies queued and sent, the messages, the offers."""
    async with lessonbot.db.transaction() as session:
        for model, columns in ((OutboxMessage, ("created_at", "sent_at")),
                               (InboundMessage, ("received_at", "processed_at")), (OfferedChoice, ("offered_at",))):
            for row in await session.scalars(select(model)):
                for column in columns:
                    if getattr(row, column) is not None:
                        setattr(row, column, getattr(row, column) - _at(days))


async def test_the_buttons_offered_on_replies_gone_go_with_them_and_one_offered_again_on_a_kept_reply_stays(
        telegram_settings, standin):
    """Ann's greeting offered its buttons DAYS and more ago; /start lately offered the same ones again on a new reply.
    The prune lets the old greeting go, but not its buttons, which the new one offers: pressed on it through the
    webhook, Yes is answered. Once every reply that offered them is gone, so are they, a batch a transaction."""
    ann = person(CHAT, "Ann")
    kept_days = telegram_settings.model_copy(update={"message_retention_days": DAYS})
    async with running(kept_days, clock=False) as (client, lessonbot):
        await post(client, text_update("/start", user=ann))
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        buttons = await _offered(lessonbot)
        assert len(buttons) >= 2
        await _aged(lessonbot, DAYS + 2)
        await post(client, text_update("/start", user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 2)
        await lessonbot.settle()

        pruned = await prune_history(lessonbot.db, utcnow(), batch=1, message_days=DAYS)
        assert (pruned["outbox_messages"], pruned["offered_choices"]) == (1, 0)
        assert await _offered(lessonbot) == buttons
        greeting = standin.called("sendMessage")[1]
        [[yes], *_others] = greeting.reply_markup["inline_keyboard"]
        await post(client, button_update(greeting, yes["callback_data"], user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 3)
        assert standin.texts(CHAT)[2] == "What should I call you?"
        await lessonbot.settle()  # (sent is not yet marked sent: a reply still sending is kept, and its chat's offers)

        offered = await _offered(lessonbot)  # (and what the name's question offers)
        await _aged(lessonbot, DAYS + 2)  # every reply that offered them is gone: so are they, one a statement
        pruned = await prune_history(lessonbot.db, utcnow(), batch=1, message_days=DAYS)
        assert pruned["offered_choices"] == len(offered) > len(buttons) and await _offered(lessonbot) == set()
        assert await prune_history(lessonbot.db, utcnow(), batch=1, message_days=DAYS) == dict.fromkeys(pruned, 0)


def _buttons(sent) -> list[dict[str, str]]:
    return [button for row in sent.reply_markup["inline_keyboard"] for button in row]


async def test_in_a_chat_still_talking_the_buttons_no_kept_reply_offers_go_and_the_latest_stay_pressable(
        telegram_settings, standin):
    """Ann agreed DAYS and more ago and was asked her name; she answers it today, and her city, so her chat has
    replies kept. The prune lets go the buttons of the old replies, offered on no reply since (the greeting's Yes, her
    name's), and keeps the ones just offered: the greeting's Yes pressed now is not available, the button of the
    newest question (is that her time zone?) is answered."""
    ann = person(CHAT, "Ann")
    kept_days = telegram_settings.model_copy(update={"message_retention_days": DAYS})
    async with running(kept_days, clock=False) as (client, lessonbot):
        await post(client, text_update("/start", user=ann))
        await standin.wait_for(lambda: standin.texts(CHAT))
        greeting = standin.called("sendMessage")[0]
        await post(client, button_update(greeting, "consent:yes", user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 2)
        await lessonbot.settle()
        long_ago = await _offered(lessonbot)
        await _aged(lessonbot, DAYS + 2)
        name_question = standin.called("sendMessage")[1]
        [name] = _buttons(name_question)
        await post(client, button_update(name_question, name["callback_data"], user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 3)
        await post(client, text_update("Lisbon", user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 4)
        await lessonbot.settle()
        latest = await _offered(lessonbot) - long_ago
        assert latest and {("1111111", "consent:yes"), ("1111111", name["callback_data"])} <= long_ago

        pruned = await prune_history(lessonbot.db, utcnow(), batch=1, message_days=DAYS)
        assert (pruned["outbox_messages"], pruned["offered_choices"]) == (2, len(long_ago))
        assert await _offered(lessonbot) == latest
        await post(client, button_update(greeting, "consent:yes", user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 5)
        assert standin.texts(CHAT)[4] == "That button isn't available."
        zone_question = standin.called("sendMessage")[3]
        await post(client, button_update(zone_question, _buttons(zone_question)[0]["callback_data"], user=ann))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 6)
        assert standin.texts(CHAT)[5].startswith("What time of day suits you for a lesson?")


async def test_a_button_on_a_reply_still_kept_however_old_stays_offered(db):
    """Three chats were each offered a button DAYS and more ago: on a reply still waiting for the person to write
    (kept however old), on one queued then and sent lately (kept), and on one sent then (gone). Only the last goes."""
    now = utcnow()
    old = now - _at(DAYS) - OFFER_REFRESH - timedelta(hours=1)  # (a choice's last offer is known to within a day)
    sent = {"waits": None, "sent-lately": now - _at(1), "gone": old}
    async with db.transaction() as session:
        for chat, sent_at in sent.items():
            conversation = await get_or_create_conversation(session, "test", chat)
            reply = Text("Ready?", choices=[Choice("Next", f"next:{chat}")]).to_payload()
            await enqueue(session, [OutboxEntry(conversation_id=conversation, channel="test", chat_id=chat,
                                                payload=reply)], now=old)
            await session.execute(update(OutboxMessage).where(OutboxMessage.conversation_id == conversation)
                                  .values(status="waiting" if sent_at is None else "sent", sent_at=sent_at))
    pruned = await prune_history(db, now, batch=1, message_days=DAYS)
    assert (pruned["outbox_messages"], pruned["offered_choices"]) == (1, 1)
    async with db.sessions() as session:
        assert set(await session.scalars(select(OfferedChoice.value))) == {"next:waits", "next:sent-lately"}


async def test_a_busy_chat_keeps_the_buttons_of_its_kept_replies_and_lets_the_older_ones_go(db):
    """A chat was sent a reply every day or so: a quiz's choice and Next DAYS and more ago, Next again 3 days ago,
    Later yesterday, and replies with no buttons between. The quiz's choice, on no reply kept, goes; Next and Later,
    on replies kept, stay."""
    now = utcnow()
    offered = {DAYS + 5: ["quiz:1:a", "next"], DAYS + 4: [], 40: [], 3: ["next"], 1: ["later"]}
    async with db.transaction() as session:
        chat = await get_or_create_conversation(session, "test", "ann")
        for days, values in offered.items():
            reply = Text("Ready?", choices=[Choice(value, value) for value in values]).to_payload()
            await enqueue(session, [OutboxEntry(conversation_id=chat, channel="test", chat_id="ann", payload=reply,
                                                member="ann")], now=now - _at(days))
        await session.execute(update(OutboxMessage).values(status="sent", sent_at=OutboxMessage.created_at))
    pruned = await prune_history(db, now, batch=1, message_days=DAYS)
    assert (pruned["outbox_messages"], pruned["offered_choices"]) == (2, 1)
    async with db.sessions() as session:
        assert set(await session.scalars(select(OfferedChoice.value))) == {"next", "later"}


async def test_the_buttons_of_a_group_become_a_supergroup_stay_offered_there_while_its_history_is_kept(db):
    """A group was offered Next long ago and again lately (a reply kept); it became a supergroup, which shows the
    group's history, buttons and all. Nothing was said there since: Next stays offered in the supergroup for as long
    as a reply of the group could show it."""
    now = utcnow()
    async with db.transaction() as session:
        group = await get_or_create_conversation(session, "test", "grp")
        for when in (now - _at(DAYS + 5), now - _at(2)):
            await enqueue(session, [OutboxEntry(conversation_id=group, channel="test", chat_id="grp",
                                                payload=Text("Ready?", choices=[Choice("Next", "next")]).to_payload())],
                          now=when)
        await session.execute(update(OutboxMessage).values(status="sent", sent_at=OutboxMessage.created_at))
        supergroup = await get_or_create_conversation(session, "test", "-100grp")
        await follow_moved_chat(session, group, supergroup, "-100grp")
    pruned = await prune_history(db, now, message_days=DAYS)
    assert (pruned["outbox_messages"], pruned["offered_choices"]) == (1, 0)
    async with db.sessions() as session:
        assert list(await session.execute(select(OfferedChoice.conversation_id, OfferedChoice.value))) == [
            (supergroup, "next")]


async def test_the_questions_learners_asked_the_answerer_go_with_their_messages(db):
    """A question asked is the words of a message, kept for the admins' knowledge page: it goes when the message
    would, after MESSAGE_RETENTION_DAYS, and not later (the page then counts the questions of the days kept)."""
    from storage.knowledge import KnowledgeQuestion
    from storage.models import User

    now = utcnow()
    async with db.transaction() as session:
        ann = User(display_name="Ann")
        session.add(ann)
        await session.flush()
        for words, age in (("what is smishing, my card is 4111", _at(DAYS) + timedelta(hours=1)),
                           ("what is vishing?", _at(DAYS) - timedelta(hours=1))):
            session.add(KnowledgeQuestion(user_id=ann.id, asked_at=now - age, question=words, normalized=words,
                                          outcome="declined", reason="not_covered"))

    assert (await prune_history(db, now))["knowledge_questions"] == 0  # the default days keep them both
    pruned = await prune(JobContext(db=db, now=lambda: now, message_days=DAYS), batch=2)

    assert pruned["knowledge_questions"] == 1
    async with db.sessions() as session:
        assert list(await session.scalars(select(KnowledgeQuestion.question))) == ["what is vishing?"]
