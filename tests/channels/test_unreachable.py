"""A person the platform will not deliver to: WhatsApp's window closed by its clock (63016 on the status callback),
a Telegram person who blocked the bot, a WhatsApp number Twilio refuses for good (21211, 21610; or reports so after
it took a reply: 21610, 30005, 30006, 63003, 63024). Through the real
apps, their SDKs and the platform stand-ins."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from channels.telegram import SECRET_HEADER
from standins.telegram import TOKEN, Fault, TelegramStandIn, bot_member_update, person, text_update
from standins.twilio import TwilioStandIn, invalid_number, unsubscribed
from storage.models import Conversation, OutboxMessage
from tests.dialogs.learning_support import import_sample
from tests.support import running, whatsapp_app

ANN = "+15551234567"
TELEGRAM_SECRET = "test-webhook-secret_0123456789"
CHAT = 4242


async def outbox_rows(lessonbot) -> list[OutboxMessage]:
    async with lessonbot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.fixture
async def twilio():
    async with TwilioStandIn() as api:
        yield api


@pytest.fixture
async def telegram_api():
    async with TelegramStandIn() as server:
        yield server


@pytest.fixture
def telegram_settings(settings, telegram_api):
    return settings.model_copy(update={
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": TELEGRAM_SECRET,
        "telegram_api_base_url": telegram_api.base_url, "web_chat_enabled": False,
    })


async def telegram_post(client, update: dict):
    return await client.post("/webhooks/telegram", content=json.dumps(update),
                             headers={"content-type": "application/json", SECRET_HEADER: TELEGRAM_SECRET})


# WhatsApp: Twilio reports 63016 (outside the 24-hour window) on the status callback --------------------------------


async def test_a_reply_whatsapp_refused_as_outside_its_window_goes_when_the_person_writes(settings, twilio):
    """Twilio took the reply (201), then its status callback says WhatsApp refused it as outside the 24-hour window
    (63016; WhatsApp's clock, not ours): it is set aside as one refused at once is, and goes when Ann writes again,
    before the answer to what she wrote."""
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        lessonbot = app.state.lessonbot
        assert (await webhooks.message(ANN, "/help")).status_code == 200
        await lessonbot.settle()
        [help_reply] = twilio.to(ANN)
        assert (await webhooks.status(help_reply.sid, "failed", "63016")).status_code == 200
        [row] = await outbox_rows(lessonbot)
        assert (row.status, row.delivery_status) == ("waiting", None) and "(63016)" in row.last_error
        assert (await webhooks.message(ANN, "hello")).status_code == 200
        await lessonbot.settle()
        bodies = [message.body for message in twilio.to(ANN)]
        assert len(bodies) == 3 and bodies[1] == bodies[0], bodies
        assert [row.status for row in await outbox_rows(lessonbot)] == ["sent", "sent"]


async def test_a_reply_in_parts_refused_as_outside_the_window_goes_again_whole_and_its_report_is_fresh(
    settings, twilio
):
    """A long reply goes in two WhatsApp messages, sent a moment apart: outside WhatsApp's window, it refuses both
    (the row knows the sid of the last). When the admin writes again both parts go again, in order, and the last's own
    report ("delivered") is what the row then says."""
    admin = "+15550009999"
    async with whatsapp_app(settings, twilio, admins=(f"whatsapp:{admin}",)) as (app, webhooks):
        lessonbot = app.state.lessonbot
        await import_sample(lessonbot)
        for text in ONBOARDING:
            assert (await webhooks.message(ANN, text)).status_code == 200
            await lessonbot.settle()
        sentence = "Phishing mails pretend to come from someone you trust, so read the sender's address with care. "
        assert (await webhooks.message(admin, "/admin broadcast everyone " + sentence * 30)).status_code == 200
        await lessonbot.settle()
        parts = twilio.to(admin)
        assert len(parts) == 2
        for part in parts:
            assert (await webhooks.status(part.sid, "undelivered", "63016")).status_code == 200
        assert (await webhooks.message(admin, "hello")).status_code == 200
        await lessonbot.settle()
        again = twilio.to(admin)[len(parts):]
        assert [message.body for message in again[:2]] == [part.body for part in parts]
        assert (await webhooks.status(again[1].sid, "delivered")).status_code == 200
        [preview] = [row for row in await outbox_rows(lessonbot) if row.platform_message_id == again[1].sid]
        assert (preview.status, preview.delivery_status, preview.delivery_error) == ("sent", "delivered", None)


async def test_a_window_refusal_reported_after_the_person_wrote_again_goes_at_once(settings, twilio):
    """Twilio's callback for the first reply comes after Ann's next message was answered (her window is open by
    then): the refused reply goes at once, not after a message she may never send."""
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        lessonbot = app.state.lessonbot
        assert (await webhooks.message(ANN, "/help")).status_code == 200
        await lessonbot.settle()
        [first] = twilio.to(ANN)
        assert (await webhooks.message(ANN, "/progress")).status_code == 200
        await lessonbot.settle()
        assert (await webhooks.status(first.sid, "undelivered", "63016")).status_code == 200
        await lessonbot.settle()
        assert [message.body for message in twilio.to(ANN)][-1] == first.body
        assert {row.status for row in await outbox_rows(lessonbot)} == {"sent"}


TEMPLATE = "HX" + "a" * 32


async def test_a_reply_refused_as_outside_the_window_goes_at_once_as_the_template_where_one_is_set(settings, twilio):
    """WhatsApp's clock closes Ann's window before ours (we close it two minutes early, and still the reply was sent
    inside that margin): Twilio took the reply, then reports 63016. With an approved template configured the reply
    does not wait for Ann to write: it goes again at once, as the template, as a reply outside the window goes; and
    once she writes, the replies go as free text again."""
    async with whatsapp_app(settings, twilio, twilio_template_content_sid=TEMPLATE) as (app, webhooks):
        lessonbot = app.state.lessonbot
        assert (await webhooks.message(ANN, "/help")).status_code == 200
        await lessonbot.settle()
        [help_reply] = twilio.to(ANN)
        assert help_reply.body and help_reply.get("ContentSid") is None  # free text: the window is open by our clock
        assert (await webhooks.status(help_reply.sid, "undelivered", "63016")).status_code == 200
        await lessonbot.settle()
        [_, *templates] = twilio.to(ANN)  # (the list of commands is longer than one template's 900 characters)
        assert templates and all(t.get("ContentSid") == TEMPLATE and t.body is None for t in templates)
        lines = [json.loads(template.get("ContentVariables"))["1"] for template in templates]
        assert " ".join(lines) == " ".join(help_reply.body.split())  # all of it, on one line
        [row] = await outbox_rows(lessonbot)
        assert (row.status, row.platform_message_id) == ("sent", templates[-1].sid)

        assert (await webhooks.message(ANN, "/progress")).status_code == 200
        await lessonbot.settle()
        answer = twilio.to(ANN)[-1]
        assert answer.body and answer.get("ContentSid") is None  # she wrote: her window is open again


# A chat that cannot be reached: further sends to it stop ------------------------------------------------------------

ONBOARDING = ("/start", "yes", "Ann", "Lisbon", "yes", "08:00", "every day", "Spot the phish, five minutes a day",
              "1 lesson a day")
ADMIN = 9999


async def test_a_telegram_person_who_blocked_the_bot_gets_nothing_more_until_they_write(telegram_settings,
                                                                                         telegram_api):
    """Ann blocks the bot: the reply Telegram refuses (403) is dead-lettered, her chat is taken out of what the bot
    sends on its own (an admin's announcement to everyone counts no one), and her next message (she unblocked it)
    is answered, and lifts that."""
    configured = telegram_settings.model_copy(update={"admins": (f"telegram:{ADMIN}",)})
    ann, boss = person(CHAT, "Ann"), person(ADMIN, "Boss")
    async with running(configured) as (client, lessonbot):
        await import_sample(lessonbot)

        async def say(text: str, user: dict) -> None:
            assert (await telegram_post(client, text_update(text, chat_id=user["id"], user=user))).status_code == 200
            await lessonbot.settle()

        for text in ONBOARDING:
            await say(text, ann)
        telegram_api.fail("sendMessage", Fault.blocked())  # Ann blocks the bot: her next reply gets 403
        await say("/progress", ann)
        [dead] = [row for row in await outbox_rows(lessonbot) if row.status == "dead"]
        assert "blocked" in dead.last_error
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == str(CHAT)))
            assert chat.opted_out_at is not None and chat.refused_by_platform
        await say("/admin broadcast everyone New lessons are out!", boss)
        assert "New lessons are out!" not in " ".join(telegram_api.texts(CHAT))
        assert " goes to 0 learners (everyone)" in telegram_api.texts(ADMIN)[-1]
        await say("/progress", ann)  # she unblocked the bot and writes
        assert telegram_api.texts(CHAT)[-1].startswith("Your progress")
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == str(CHAT)))
            assert (chat.opted_out_at, chat.refused_by_platform) == (None, False)


async def test_a_telegram_person_who_unblocks_the_bot_without_writing_gets_what_it_sends_on_its_own_again(
    telegram_settings, telegram_api
):
    """Ann blocks the bot (a reply refused with 403 takes her chat out of what the bot sends on its own), then
    unblocks it and writes nothing: Telegram's my_chat_member for her private chat (the bot "kicked", then "member"
    again) lifts that, says nothing to her, and the next announcement reaches her."""
    configured = telegram_settings.model_copy(update={"admins": (f"telegram:{ADMIN}",)})
    ann, boss = person(CHAT, "Ann"), person(ADMIN, "Boss")
    async with running(configured) as (client, lessonbot):
        await import_sample(lessonbot)

        async def post(update: dict) -> None:
            assert (await telegram_post(client, update)).status_code == 200
            await lessonbot.settle()

        for text in ONBOARDING:
            await post(text_update(text, chat_id=CHAT, user=ann))
        telegram_api.fail("sendMessage", Fault.blocked())
        await post(text_update("/progress", chat_id=CHAT, user=ann))
        await post(bot_member_update(CHAT, "kicked", by=ann, until_date=0))  # Telegram's word of the block
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == str(CHAT)))
            assert chat.opted_out_at is not None and chat.refused_by_platform
        sent = len(telegram_api.texts(CHAT))
        await post(bot_member_update(CHAT, "member", by=ann, was="kicked"))  # she unblocked the bot
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == str(CHAT)))
            assert (chat.opted_out_at, chat.refused_by_platform) == (None, False)
        assert len(telegram_api.texts(CHAT)) == sent  # nothing said about it
        await post(text_update("/admin broadcast everyone New lessons are out!", chat_id=ADMIN, user=boss))
        assert " goes to 1 learner (everyone)" in telegram_api.texts(ADMIN)[-1]


@pytest.mark.parametrize(("chat", "status"), [
    (CHAT, "kicked"),  # Ann blocked the bot in her private chat
    (-1001234567890, "left"),  # the group's admins removed the bot
    (-1001234567890, "kicked"),  # and banned it
], ids=["blocked", "removed-from-group", "banned-from-group"])
async def test_telegram_word_that_the_bot_was_blocked_or_removed_takes_the_chat_out_at_once(
    telegram_settings, telegram_api, chat, status
):
    """Telegram's my_chat_member says the bot was blocked in a private chat, or removed from a group: the chat is
    taken out of what the bot sends on its own then, not at the next send Telegram refuses (Ann's next announcement
    is not even tried), and nothing is said about it. Let back in ("member"), it is sent to again."""
    configured = telegram_settings.model_copy(update={"admins": (f"telegram:{ADMIN}",)})
    ann, boss = person(CHAT, "Ann"), person(ADMIN, "Boss")
    by = ann if chat > 0 else boss
    async with running(configured) as (client, lessonbot):
        await import_sample(lessonbot)

        async def post(update: dict) -> None:
            assert (await telegram_post(client, update)).status_code == 200
            await lessonbot.settle()

        async def refused() -> bool:
            async with lessonbot.db.sessions() as session:
                found = await session.scalar(select(Conversation).where(Conversation.chat_id == str(chat)))
                return found.opted_out_at is not None and found.refused_by_platform

        for text in ONBOARDING if chat > 0 else ("/help",):
            await post(text_update(text, chat_id=chat, user=ann))
        sent = len(telegram_api.called("sendMessage"))
        telegram_api.refuse(chat, Fault.blocked() if chat > 0 else Fault(403, "Forbidden: bot was kicked from the "
                                                                              "group chat"))
        await post(bot_member_update(chat, status, by=by, **({"until_date": 0} if status == "kicked" else {})))
        assert await refused()
        assert len(telegram_api.called("sendMessage")) == sent  # nothing said about it
        if chat > 0:
            await post(text_update("/admin broadcast everyone New lessons are out!", chat_id=ADMIN, user=boss))
            assert " goes to 0 learners (everyone)" in telegram_api.texts(ADMIN)[-1]
            assert not telegram_api.called("sendMessage", ok=False)  # not tried there
        del telegram_api.refused_chats[str(chat)]
        await post(bot_member_update(chat, "member", by=by, was=status))
        assert not await refused()


GROUP = -1001234567890


async def group_chat(lessonbot) -> Conversation:
    async with lessonbot.db.sessions() as session:
        return await session.scalar(select(Conversation).where(Conversation.chat_id == str(GROUP)))


@pytest.mark.parametrize(("fault", "kind", "status"), [
    (Fault.muted(), "my_chat_member", "administrator"),  # its admins made the bot an admin
    (Fault.no_rights(), "my_chat_member", "member"),  # they let it speak again
], ids=["muted-then-admin", "no-rights-then-member"])
async def test_a_group_where_the_bot_may_not_send_gets_nothing_more_until_its_rights_change(
    telegram_settings, telegram_api, fault, kind, status
):
    """The group's admins muted the bot: the reply Telegram refuses (400 "not enough rights …") is dead-lettered and
    the group taken out of what the bot sends on its own, not dead-lettered again lesson after lesson; Telegram's
    word that the bot's membership changed lifts that, and says nothing in the group."""
    ann = person(CHAT, "Ann")
    async with running(telegram_settings) as (client, lessonbot):
        telegram_api.fail("sendMessage", fault)
        update = text_update("/help", chat_id=GROUP, user=ann)
        assert (await telegram_post(client, update)).status_code == 200
        await lessonbot.settle()
        [dead] = [row for row in await outbox_rows(lessonbot) if row.status == "dead"]
        assert "rights" in dead.last_error
        chat = await group_chat(lessonbot)
        assert chat.opted_out_at is not None and chat.refused_by_platform
        sent = len(telegram_api.texts(GROUP))
        admin = person(ADMIN, "Boss")
        assert (await telegram_post(client, bot_member_update(GROUP, status, by=admin, kind=kind))).status_code == 200
        await lessonbot.settle()
        chat = await group_chat(lessonbot)
        assert (chat.opted_out_at, chat.refused_by_platform) == (None, False)
        assert len(telegram_api.texts(GROUP)) == sent  # nothing said about it


async def test_the_bot_muted_again_stays_out_of_what_it_sends_on_its_own(telegram_settings, telegram_api):
    """A report that the bot was muted (restricted, no messages) lifts nothing."""
    ann = person(CHAT, "Ann")
    async with running(telegram_settings) as (client, lessonbot):
        telegram_api.fail("sendMessage", Fault.muted())
        assert (await telegram_post(client, text_update("/help", chat_id=GROUP, user=ann))).status_code == 200
        await lessonbot.settle()
        muted = bot_member_update(GROUP, "restricted", by=person(ADMIN, "Boss"))
        assert (await telegram_post(client, muted)).status_code == 200
        await lessonbot.settle()
        chat = await group_chat(lessonbot)
        assert chat.opted_out_at is not None and chat.refused_by_platform


async def test_a_member_whose_private_chat_telegram_refuses_is_told_in_the_group_once_a_day(telegram_settings,
                                                                                            telegram_api):
    """Ann types /link in the group; its code goes to her private chat, which Telegram refuses (she deleted it: a bot
    cannot write first). The group gets one short note, naming nothing of the code, with a button that opens a chat
    with the bot; asking again that day brings no second note, and says where to ask."""
    ann = person(CHAT, "Ann")
    async with running(telegram_settings) as (client, lessonbot):
        await import_sample(lessonbot)

        async def say(text: str, chat: int) -> None:
            assert (await telegram_post(client, text_update(text, chat_id=chat, user=ann))).status_code == 200
            await lessonbot.settle()

        for text in (*ONBOARDING, "/language", "Español"):
            await say(text, CHAT)
        telegram_api.refuse(CHAT, Fault.not_started())  # she deleted her chat with the bot
        await say("/link", GROUP)
        await say("/link", GROUP)
        group = telegram_api.texts(GROUP)
        notes = [call for call in telegram_api.called("sendMessage", ok=True)
                 if call.params["chat_id"] == str(GROUP) and "abras un chat conmigo" in call.params["text"]]
        assert len(notes) == 1, group
        [note] = notes  # in her language, naming nothing of the code
        assert note.params["text"] == ("Ann, no puedo escribirte en privado hasta que abras un chat conmigo. Ábrelo y "
                                       "vuelve a preguntar aquí.")
        [[button]] = note.reply_markup["inline_keyboard"]
        assert button == {"text": "Abrir un chat conmigo", "url": "https://t.me/lessonbot_test_bot"}
        assert group[-1].startswith("Los códigos de enlace")  # asked again: where to ask, no second note


# How Twilio says it cannot reach a number: a send refused at once (its 400), or a status callback after it took the
# reply (201); and what the number sends when it can be reached again (after 21610 its START, as after our STOP).
REFUSED_AT_ONCE = {"21211": invalid_number, "21610": unsubscribed}


@pytest.mark.parametrize(("code", "reported", "back", "answer"), [
    ("21211", False, "/progress", "Your progress"),  # refused at once: no valid phone number
    ("21610", False, "START", "Hi Ann, welcome back"),  # refused at once: unsubscribed at Twilio (STOP)
    ("21610", True, "START", "Hi Ann, welcome back"),  # reported after: unsubscribed at Twilio
    ("30005", True, "/progress", "Your progress"),  # reported after: unknown destination handset
    ("30006", True, "/progress", "Your progress"),  # reported after: a landline or an unreachable carrier
    ("63003", True, "/progress", "Your progress"),  # reported after: not on WhatsApp
    ("63024", True, "/progress", "Your progress"),  # reported after: not a valid recipient
])
async def test_a_whatsapp_number_twilio_cannot_reach_gets_nothing_more_until_it_writes(
    settings, twilio, code, reported, back, answer
):
    """Twilio will not deliver to Ann's number: it is taken out of what the bot sends on its own (an admin's
    announcement to everyone does not go to it) until a message from it shows it can be reached again."""
    admin = "+15550009999"
    async with whatsapp_app(settings, twilio, admins=(f"whatsapp:{admin}",)) as (app, webhooks):
        lessonbot = app.state.lessonbot
        await import_sample(lessonbot)

        async def say(number: str, text: str) -> None:
            assert (await webhooks.message(number, text)).status_code == 200
            await lessonbot.settle()

        async def flags() -> tuple[object, bool]:
            async with lessonbot.db.sessions() as session:
                chat = await session.scalar(select(Conversation).where(Conversation.chat_id == ANN))
                return chat.opted_out_at, chat.refused_by_platform

        for text in ONBOARDING:
            await say(ANN, text)
        if not reported:
            twilio.script = [REFUSED_AT_ONCE[code]()]  # Twilio refuses Ann's next message for good
            await say(ANN, "/progress")
            [dead] = [row for row in await outbox_rows(lessonbot) if row.status == "dead"]
            assert f"Twilio error {code} " in dead.last_error
        else:
            assert (await webhooks.status(twilio.to(ANN)[-1].sid, "failed", code)).status_code == 200
        opted_out_at, refused_by_platform = await flags()
        assert opted_out_at is not None and refused_by_platform == (code != "21610")
        refused_at = len(twilio.to(ANN))
        await say(admin, "/admin broadcast everyone New lessons are out!")
        await say(admin, "1")
        for _ in range(50):
            await lessonbot.settle()
        assert [message.body for message in twilio.to(ANN)[refused_at:]] == []
        await say(ANN, back)
        assert twilio.to(ANN)[-1].body.startswith(answer)
        assert await flags() == (None, False)


async def test_start_from_a_number_whatsapp_refused_opts_it_back_in_as_start_does(settings, twilio):
    """After WhatsApp refused Ann's number (63003), Ann sends Twilio's START: she is taken back in and answered as
    /start answers, as after her own STOP, not asked about the word "START"."""
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        lessonbot = app.state.lessonbot
        await import_sample(lessonbot)

        async def say(text: str) -> list[str]:
            before = len(twilio.to(ANN))
            assert (await webhooks.message(ANN, text)).status_code == 200
            await lessonbot.settle()
            return [message.body for message in twilio.to(ANN)[before:]]

        for text in ONBOARDING:
            await say(text)
        assert (await webhooks.status(twilio.to(ANN)[-1].sid, "failed", "63003")).status_code == 200
        again = await say("START")
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == ANN))
            assert (chat.opted_out_at, chat.refused_by_platform) == (None, False)
        assert again and again == await say("/start")


@pytest.mark.parametrize("code", ["30003", "30008"])  # the phone off or out of reach; an unknown error
async def test_a_reply_whatsapp_reports_undelivered_is_a_failed_reply_an_admin_sees_and_sends_again(
    settings, twilio, code
):
    """Twilio took the reply (201), then reported it undelivered: it is a failed reply, listed by /admin outbox with
    Twilio's code and counted by /admin stats, not "everything was delivered"; /admin requeue sends it again whole."""
    admin = "+15550009999"
    async with whatsapp_app(settings, twilio, admins=(f"whatsapp:{admin}",)) as (app, webhooks):
        lessonbot = app.state.lessonbot

        async def say(number: str, text: str) -> list[str]:
            before = len(twilio.to(number))
            assert (await webhooks.message(number, text)).status_code == 200
            await lessonbot.settle()
            return [message.body for message in twilio.to(number)[before:]]

        helped = await say(ANN, "/help")
        sid = twilio.to(ANN)[-1].sid
        assert (await webhooks.status(sid, "sent")).status_code == 200
        assert (await webhooks.status(sid, "undelivered", code)).status_code == 200
        [outbox] = await say(admin, "/admin outbox")
        assert f"whatsapp:{ANN}" in outbox and code in outbox, outbox
        [stats] = await say(admin, "/admin stats")
        assert "1 failed" in stats, stats
        await say(admin, "/admin requeue all")
        assert await say(ANN, "/help") == helped  # (the requeued reply went before this one's)
        assert [message.body for message in twilio.to(ANN)] == helped * 3
