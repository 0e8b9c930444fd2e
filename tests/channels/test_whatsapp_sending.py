"""Sending on WhatsApp through the real twilio client and a local Twilio API: rendering, Twilio's errors as the
dispatcher's, the 24-hour window, and the outbox rows that result."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from sqlalchemy import select, update

from bot.channel import (
    Delivery,
    PartsSent,
    PermanentSendError,
    RateLimit,
    RateLimited,
    SendsUnpromptedWithin,
    TransientSendError,
    WaitForInbound,
    unprompted_windows,
)
from bot.messages import Choice, Document, Text
from channels.webchat import WebChatChannel
from channels.whatsapp import WhatsAppChannel
from standins.twilio import (
    PUBLIC_BASE_URL,
    SENDER,
    Scripted,
    TwilioStandIn,
    invalid_number,
    outside_window,
    server_error,
    slow,
    too_many_requests,
    unsubscribed,
)
from storage.models import Conversation, OutboxMessage
from tests.support import whatsapp_app

ANN = "+15551234567"
TEMPLATE = "HX" + "a" * 32
QUIZ = Text("Which letter comes second?", (Choice("Alpha", "alpha"), Choice("Beta", "beta")))


@pytest.fixture
async def twilio():
    async with TwilioStandIn() as api:
        yield api


@pytest.fixture
async def channel(twilio):
    whatsapp = whatsapp_channel(twilio)
    yield whatsapp
    await whatsapp.close()


def whatsapp_channel(twilio: TwilioStandIn, **options) -> WhatsAppChannel:
    return WhatsAppChannel(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        sender=SENDER,
        public_base_url=PUBLIC_BASE_URL,
        api_base_url=twilio.base_url,
        timeout=options.pop("timeout", 0.5),
        **options,
    )


def delivery(
    reply, *, outbox_id: int = 1, wrote_ago: timedelta | None = timedelta(minutes=5), parts: PartsSent | None = None
) -> Delivery:
    last_inbound_at = None if wrote_ago is None else datetime.now(timezone.utc) - wrote_ago
    return Delivery(
        outbox_id=outbox_id, chat_id=ANN, reply=reply, last_inbound_at=last_inbound_at, parts=parts or PartsSent()
    )


def paragraphs(count: int) -> str:
    return "\n\n".join(f"Paragraph {n}:" + " spaced repetition keeps lessons fresh." * 9 for n in range(count))


# rendering -----------------------------------------------------------------------------------------------------------


async def test_a_long_reply_goes_in_parts_of_at_most_1600_characters_in_order(channel, twilio):
    text = paragraphs(12)
    sid = await channel.send(delivery(Text(text)))

    bodies = [message.body for message in twilio.sent]
    assert len(bodies) > 1 and all(len(body) <= 1600 for body in bodies)
    assert "\n\n".join(bodies) == text
    assert sid == twilio.sent[-1].sid
    assert all(message.get("StatusCallback") == f"{PUBLIC_BASE_URL}/webhooks/twilio/status" for message in twilio.sent)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def test_a_long_list_goes_in_parts_that_keep_its_lines(channel, twilio):
    step = "check the sender's address, the link's real domain and whether it is urgent"
    steps = "\n".join(f"- **Step {n}:** {step}" for n in range(1, 19))
    await channel.send(delivery(Text("Here is how to check a message:\n" + steps)))
    bodies = [message.body for message in twilio.sent]
    assert len(bodies) == 2 and all(len(body) <= 1600 for body in bodies)
    shown = ["Here is how to check a message:"] + [f"• *Step {n}:* {step}" for n in range(1, 19)]
    assert "\n".join(bodies).split("\n") == shown


async def test_the_1600_limit_is_counted_in_utf16_units_as_twilio_counts(channel, twilio, tmp_path):
    board = "\n".join(f"🏆 {n:02d}. 🔥🔥 Learner {n} ⭐⭐⭐ 12 lessons 🎉" for n in range(1, 41))
    assert len(board) <= 1600 < utf16_units(board)
    await channel.send(delivery(Text(board)))
    await channel.send(delivery(Document("board.pdf", board, url="https://cdn.example.org/board.pdf"), outbox_id=2))
    text_bodies, caption_bodies, [media] = twilio.sent[:2], twilio.sent[2:4], twilio.sent[4:]
    for sent in (text_bodies, caption_bodies):
        assert len(sent) == 2 and all(utf16_units(message.body) <= 1600 for message in sent)
        assert "\n".join(message.body for message in sent) == board
    assert media.form["MediaUrl"] == ["https://cdn.example.org/board.pdf"] and media.body is None


async def test_choices_go_as_numbered_lines_and_markdown_becomes_whatsapp_formatting(channel, twilio):
    await channel.send(delivery(Text("**Quiz**: which letter comes *second*?", QUIZ.choices)))
    assert twilio.sent[0].body == "*Quiz*: which letter comes _second_?\n\n1. Alpha\n2. Beta"


async def test_a_quick_reply_template_is_used_when_one_fits_the_choices(twilio):
    quick = "HX" + "b" * 32
    channel = whatsapp_channel(twilio, quick_reply_content_sids={2: quick})
    try:
        await channel.send(delivery(QUIZ, outbox_id=1))
        await channel.send(delivery(Text("Pick", (Choice("A", "a"), Choice("B", "b"), Choice("C", "c"))), outbox_id=2))
    finally:
        await channel.close()
    template, numbered = twilio.sent
    assert template.get("ContentSid") == quick and template.body is None
    assert json.loads(template.get("ContentVariables")) == {
        "1": "Which letter comes second?", "2": "Alpha", "3": "alpha", "4": "Beta", "5": "beta",
    }
    assert numbered.get("ContentSid") is None and numbered.body.endswith("1. A\n2. B\n3. C")


def test_a_quick_reply_body_and_a_template_variable_are_held_to_their_limits_in_utf16_units():
    from channels.whatsapp.render import quick_reply_variables, template_variables

    emoji = "🔥 " * 400  # 800 characters, 1,200 UTF-16 units: past the quick-reply body's 1,024 as Twilio counts
    assert len(emoji) < 1024 < utf16_units(emoji)
    assert quick_reply_variables(Text(emoji, (Choice("A", "a"), Choice("B", "b")))) is None  # numbered lines instead
    lines = [json.loads(variables)["1"] for message in template_variables(Text("🎉 " * 600)) for variables in message]
    assert len(lines) > 1 and all(utf16_units(line) <= 900 for line in lines)
    assert " ".join(lines) == ("🎉 " * 600).strip()


async def test_documents_go_by_url_and_local_files_through_a_signed_link_the_app_serves(settings, twilio, tmp_path):
    handout = tmp_path / "certificate.pdf"
    handout.write_bytes(b"%PDF-1.4 certificate of completion")
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        channel = app.state.lessonbot.channels["whatsapp"]
        await channel.send(delivery(Document("notes.pdf", "Today's notes", url="https://cdn.example.org/notes.pdf")))
        await channel.send(delivery(Document("certificate.pdf", "Well done!", path=str(handout),
                                             media_type="application/pdf"), outbox_id=2))
        # WhatsApp shows no caption under a document: the caption goes first, on its own
        notes, by_url, well_done, by_path = twilio.sent
        assert notes.body == "Today's notes" and well_done.body == "Well done!"
        assert by_url.form["MediaUrl"] == ["https://cdn.example.org/notes.pdf"] and by_url.body is None
        [link] = by_path.form["MediaUrl"]
        assert link.startswith(f"{PUBLIC_BASE_URL}/webhooks/twilio/media/") and link.endswith("/certificate.pdf")

        fetched = await webhooks.client.get(link)
        assert fetched.status_code == 200 and fetched.content == handout.read_bytes()
        assert fetched.headers["content-type"] == "application/pdf"
        token = link.split("/")[-2]
        forged = link.replace(token, token[:-4] + ("0000" if not token.endswith("0000") else "1111"))
        assert (await webhooks.client.get(forged)).status_code == 403
        not_ascii = link.replace(token, token[:-4] + "%C3%A9%C3%A9")  # a signature no link has: refused, no error
        assert (await webhooks.client.get(not_ascii)).status_code == 403


async def test_a_file_whatsapp_does_not_carry_goes_as_a_link_under_its_caption(settings, twilio, tmp_path):
    export = tmp_path / "lessonbot-data.json"
    export.write_text('{"name": "Ann"}', encoding="utf-8")
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        channel = app.state.lessonbot.channels["whatsapp"]
        await channel.send(delivery(Document("lessonbot-data.json", "Everything I keep about you.", path=str(export),
                                             media_type="application/json")))
        [sent] = twilio.sent  # (Twilio's WhatsApp takes PDF, DOC, DOCX, PPTX and XLSX documents only)
        assert sent.form.get("MediaUrl") is None
        caption, link = sent.body.split("\n\n")
        assert caption == "Everything I keep about you." and link.endswith("/lessonbot-data.json")
        fetched = await webhooks.client.get(link)
        assert fetched.status_code == 200 and fetched.json() == {"name": "Ann"}
        assert fetched.headers["content-disposition"] == 'attachment; filename="lessonbot-data.json"'


# Twilio's errors, as the dispatcher needs them ------------------------------------------------------------------------


async def test_a_429_becomes_rate_limited_at_twilios_retry_after(channel, twilio):
    in_a_while = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    twilio.script = [too_many_requests("2.5"), too_many_requests(None), too_many_requests(in_a_while)]
    waits = []
    for _ in range(3):
        with pytest.raises(RateLimited) as limited:
            await channel.send(delivery(Text("hi")))
        waits.append(limited.value.retry_after)
    assert waits[:2] == [2.5, 1.0] and 25 < waits[2] <= 30
    assert twilio.sent == []


async def test_5xx_timeouts_and_refused_connections_are_transient(twilio):
    channel = whatsapp_channel(twilio, timeout=0.3)
    try:
        twilio.script = [server_error(), slow(1.0)]
        for _ in range(2):
            with pytest.raises(TransientSendError) as failed:
                await channel.send(delivery(Text("hi")))
            assert not isinstance(failed.value, RateLimited)
        await twilio.stop()
        with pytest.raises(TransientSendError, match="did not answer"):
            await channel.send(delivery(Text("hi")))
    finally:
        await channel.close()


async def test_refusals_that_will_not_change_are_permanent_and_say_why(channel, twilio):
    twilio.script = [invalid_number(), unsubscribed()]
    with pytest.raises(PermanentSendError, match="21211.*not a valid phone number") as refused:
        await channel.send(delivery(Text("hi")))
    # logged and kept on the reply's row: the learner's number is not (Twilio puts it in its message)
    assert "whatsapp:+…21 is not" in str(refused.value) and "5557654" not in str(refused.value)
    with pytest.raises(PermanentSendError, match="21610.*START"):
        await channel.send(delivery(Text("hi")))


async def test_a_reply_split_in_parts_resumes_after_the_part_that_failed(channel, twilio):
    text = paragraphs(12)
    twilio.script = [Scripted(), server_error()]
    saved: list[list[str]] = []

    async def save(ids: list[str]) -> None:  # what the dispatcher writes to the outbox row
        saved.append(ids)

    with pytest.raises(TransientSendError):
        await channel.send(delivery(Text(text), outbox_id=7, parts=PartsSent(save=save)))
    assert len(twilio.sent) == 1 and len(saved) == 1
    # The retry is handed the row's parts, as any process's dispatcher would read them.
    await channel.send(delivery(Text(text), outbox_id=7, parts=PartsSent(list(saved[-1]))))
    assert "\n\n".join(message.body for message in twilio.sent) == text  # the first part was not sent twice


def test_every_send_counts_against_the_senders_80_per_second(channel):
    assert channel.rate_limits(ANN) == (RateLimit("whatsapp:sender:+14155238886", 80, 1.0, shared=True),)


# the 24-hour customer-service window ----------------------------------------------------------------------------------


async def test_outside_the_window_without_a_template_nothing_is_sent_and_the_reply_waits(channel, twilio):
    for wrote_ago in (timedelta(hours=25), None):
        with pytest.raises(WaitForInbound, match="24-hour window"):
            await channel.send(delivery(Text("Your lesson is ready"), wrote_ago=wrote_ago))
    assert twilio.requests == 0


async def test_outside_the_window_the_configured_template_carries_the_reply(twilio):
    channel = whatsapp_channel(twilio, template_content_sid=TEMPLATE)
    try:
        await channel.send(delivery(QUIZ, wrote_ago=timedelta(days=3)))
        with pytest.raises(WaitForInbound, match="document"):
            await channel.send(delivery(Document("notes.pdf", url="https://cdn.example.org/n.pdf"),
                                        wrote_ago=timedelta(days=3)))
    finally:
        await channel.close()
    [sent] = twilio.sent
    assert sent.get("ContentSid") == TEMPLATE and sent.body is None
    assert json.loads(sent.get("ContentVariables")) == {"1": "Which letter comes second? 1. Alpha 2. Beta"}


async def test_a_long_reply_outside_the_window_goes_whole_in_as_many_templates_as_it_needs(twilio):
    """A template variable carries 900 characters: a longer reply goes in several templates, split between sentences
    (then words), each on one line, in order, nothing of it left out; its numbered options go whole in the last."""
    channel = whatsapp_channel(twilio, template_content_sid=TEMPLATE)
    question = "Read the passage again before you answer. " * 30 + "Which letter comes second?"
    long_text = paragraphs(6)
    try:
        await channel.send(delivery(Text(question, QUIZ.choices), wrote_ago=timedelta(days=3)))
        asked = len(twilio.sent)
        await channel.send(delivery(Text(long_text), wrote_ago=timedelta(days=3)))
    finally:
        await channel.close()
    assert all(message.get("ContentSid") == TEMPLATE and message.body is None for message in twilio.sent)
    lines = [json.loads(message.get("ContentVariables"))["1"] for message in twilio.sent]
    assert asked > 1 and all(utf16_units(line) <= 900 and "\n" not in line for line in lines)
    assert " ".join(lines[:asked]) == f"{question} 1. Alpha 2. Beta"
    assert lines[asked - 1].endswith("Which letter comes second? 1. Alpha 2. Beta")
    assert all(line.endswith(".") for line in lines[: asked - 1])  # split after a sentence, not inside one
    assert " ".join(lines[asked:]) == " ".join(long_text.split())


async def test_when_twilio_says_the_window_closed_the_template_goes_or_the_reply_waits(twilio):
    without = whatsapp_channel(twilio)
    with_template = whatsapp_channel(twilio, template_content_sid=TEMPLATE)
    try:
        twilio.script = [outside_window()]
        with pytest.raises(WaitForInbound, match="63016"):
            await without.send(delivery(Text("hi")))
        twilio.script = [outside_window()]
        await with_template.send(delivery(Text("hi")))
    finally:
        await without.close()
        await with_template.close()
    [sent] = twilio.sent
    assert sent.get("ContentSid") == TEMPLATE


async def test_a_split_reply_whose_window_closed_after_its_first_parts_goes_on_as_templates_without_repeating_them(
    twilio,
):
    """Parts went in the window, a later one failed, and the window closed before the retry: the rest goes as the
    template, in as many as it needs, from where the parts sent stopped, repeating none of them and leaving nothing
    out."""
    channel = whatsapp_channel(twilio, template_content_sid=TEMPLATE)
    text = paragraphs(12)
    saved: list[list[str]] = []

    async def save(ids: list[str]) -> None:
        saved.append(ids)

    try:
        twilio.script = [Scripted(), server_error()]
        with pytest.raises(TransientSendError):
            await channel.send(delivery(Text(text), parts=PartsSent(save=save)))
        sid = await channel.send(delivery(Text(text), wrote_ago=timedelta(hours=30), parts=PartsSent(list(saved[-1]))))
    finally:
        await channel.close()
    first, *rest = twilio.sent
    assert text.startswith(first.body) and first.get("ContentSid") is None
    assert rest and all(message.get("ContentSid") == TEMPLATE for message in rest) and sid == rest[-1].sid
    lines = [json.loads(message.get("ContentVariables"))["1"] for message in rest]
    assert " ".join([first.body, *lines]).split() == text.split()


async def test_the_window_the_channel_declares_is_the_one_it_sends_by(twilio):
    """The scheduler reads the window from the channel (SendsUnpromptedWithin); it must be the one `send` keeps."""
    without = whatsapp_channel(twilio)
    with_template = whatsapp_channel(twilio, template_content_sid=TEMPLATE)
    try:
        assert isinstance(without, SendsUnpromptedWithin)
        wrote = datetime.now(timezone.utc) - timedelta(hours=23, minutes=59)
        closes = without.may_send_unprompted_until(wrote)
        assert wrote + timedelta(hours=23) < closes < wrote + timedelta(hours=24)
        assert closes < datetime.now(timezone.utc)  # the margin has closed it already, so `send` waits too
        with pytest.raises(WaitForInbound, match="24-hour window"):
            await without.send(delivery(Text("Your lesson is ready"), wrote_ago=timedelta(hours=23, minutes=59)))
        assert without.may_send_unprompted_until(None) < datetime.now(timezone.utc)  # never wrote: closed
        assert with_template.may_send_unprompted_until(None) is None  # the template may go any time
        assert unprompted_windows([without, WebChatChannel("secret-key-0123456789")]).keys() == {"whatsapp"}
    finally:
        await without.close()
        await with_template.close()
    assert twilio.requests == 0


# through the dispatcher: the outbox rows --------------------------------------------------------------------------


async def outbox(app) -> list[OutboxMessage]:
    async with app.state.lessonbot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_a_429_storm_delays_replies_but_each_arrives_once(settings, twilio):
    learners = [f"+1555000{n:04d}" for n in range(6)]
    twilio.script = [too_many_requests("0.2") for _ in range(10)]
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        await asyncio.gather(*(webhooks.message(number, "/help") for number in learners))
        await twilio.wait_for(len(learners), timeout=15)

        async def all_sent() -> bool:
            return [row.status for row in await outbox(app)] == ["sent"] * len(learners)

        await until(all_sent)
    assert sorted(message.to for message in twilio.sent) == sorted(f"whatsapp:{n}" for n in learners)
    assert len(twilio.refused) == 10


async def test_5xx_is_retried_and_an_invalid_number_is_dead_lettered(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        twilio.script = [server_error(), server_error()]
        await webhooks.message(ANN, "/help")
        await twilio.wait_for(1)

        async def settled() -> bool:
            return [row.status for row in await outbox(app)] == ["sent"]

        await until(settled)
        [row] = await outbox(app)
        assert row.attempts == 3

        twilio.script = [invalid_number()]
        await webhooks.message("+15550009999", "/help")

        async def dead() -> bool:
            return [row.status for row in await outbox(app)] == ["sent", "dead"]

        await until(dead)
        assert "21211" in (await outbox(app))[1].last_error
        assert (await outbox(app))[1].refusal == "21211"  # Twilio's own word for it, kept apart from the text
    assert len(twilio.sent) == 1


async def age_conversation(app, number: str, hours: float) -> None:
    async with app.state.lessonbot.db.transaction() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.chat_id == number)
            .values(last_inbound_at=datetime.now(timezone.utc) - timedelta(hours=hours))
        )


async def queue_lesson(app, number: str, text: str) -> None:
    """A reply written with no message to answer, as the scheduler writes a lesson."""
    async with app.state.lessonbot.db.transaction() as session:
        conversation = await session.scalar(select(Conversation).where(Conversation.chat_id == number))
        session.add(OutboxMessage(conversation_id=conversation.id, channel="whatsapp", chat_id=number,
                                  payload=Text(text).to_payload()))
    app.state.lessonbot.dispatcher.notify()


async def test_outside_the_window_a_reply_waits_and_goes_first_when_the_learner_writes(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        await webhooks.message(ANN, "/help")
        await app.state.lessonbot.settle()
        await age_conversation(app, ANN, hours=30)
        await queue_lesson(app, ANN, "Lesson 2: the forgetting curve")
        await app.state.lessonbot.settle()

        waiting = (await outbox(app))[-1]
        assert waiting.status == "waiting" and "24-hour window" in waiting.last_error
        assert len(twilio.sent) == 1

        await webhooks.message(ANN, "/help")
        await app.state.lessonbot.settle()
        rows = await outbox(app)
        assert [row.status for row in rows] == ["sent"] * len(rows) and len(rows) >= 3
    assert twilio.sent[1].body == "Lesson 2: the forgetting curve"  # first, then the answer to /help
    assert [message.body for message in twilio.sent[2:]] == [message.body for message in twilio.sent[:1]]


async def test_outside_the_window_a_configured_template_is_sent_for_the_reply(settings, twilio):
    async with whatsapp_app(settings, twilio, twilio_template_content_sid=TEMPLATE) as (app, webhooks):
        await webhooks.message(ANN, "/help")
        await app.state.lessonbot.settle()
        await age_conversation(app, ANN, hours=30)
        await queue_lesson(app, ANN, "Lesson 2:\nthe forgetting curve")
        await app.state.lessonbot.settle()
        assert [row.status for row in await outbox(app)] == ["sent", "sent"]
    template = twilio.sent[-1]
    assert template.get("ContentSid") == TEMPLATE
    assert json.loads(template.get("ContentVariables")) == {"1": "Lesson 2: the forgetting curve"}
