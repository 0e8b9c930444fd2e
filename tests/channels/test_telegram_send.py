"""Replies to Telegram: rendering, limits, and what the dispatcher does with the Bot API's failures.

Each test runs the real pipeline (a reply stored in the outbox, sent by the dispatcher through TelegramChannel and
python-telegram-bot) against the local Bot API stand-in, which can be told to fail.
"""

from __future__ import annotations

import asyncio
import html
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData
from telegram.request._requestparameter import RequestParameter

from bot.channel import Delivery, RateLimit, TransientSendError
from bot.core import Lessonbot
from bot.messages import CHAT_TYPE, REPLY_ADDRESS, Choice, Document, InboundMessage, Reply, Text
from channels.telegram.channel import MAX_CAPTION_CHARS, MAX_TEXT_CHARS, TelegramChannel, retry_after_seconds
from channels.telegram.request import AiohttpRequest
from dialogs.turn import Turn
from standins.telegram import TOKEN, Fault
from storage.models import Conversation, OutboxMessage
from tests.support import standin  # noqa: F401 (the fixture)

CHAT = 1111111


@pytest.fixture
def channel(standin) -> TelegramChannel:
    return TelegramChannel(token=TOKEN, api_base_url=standin.base_url, timeout=0.5)


@asynccontextmanager
async def bot_replying(settings, channel: TelegramChannel, *replies: Reply) -> AsyncIterator[Lessonbot]:
    """A running Lessonbot whose every turn answers with `replies`, sending through `channel`."""

    async def respond(turn: Turn) -> None:
        for reply in replies:
            turn.send(reply)

    lessonbot = Lessonbot(settings, [channel], respond=respond)
    lessonbot.start()
    try:
        await lessonbot.receive(InboundMessage(
            channel="telegram", platform_id=uuid.uuid4().hex, chat_id=str(CHAT), sender_id=str(CHAT), text="hi",
        ))
        yield lessonbot
    finally:
        await lessonbot.stop()
        await channel.close()


async def outbox(lessonbot: Lessonbot) -> list[OutboxMessage]:
    async with lessonbot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_text_is_escaped_for_html(settings, channel, standin):
    async with bot_replying(settings, channel, Text("Use <b> for bold & <i> for italics")):
        await standin.wait_for(lambda: standin.texts(CHAT))
    [call] = standin.called("sendMessage")
    assert call.params["text"] == "Use &lt;b&gt; for bold &amp; &lt;i&gt; for italics"
    assert call.params["parse_mode"] == "HTML"


async def test_a_long_reply_is_split_in_order_with_the_buttons_under_the_last_part(settings, channel, standin):
    paragraphs = [(f"Paragraph {n}: " + "Cells divide and grow. " * 65).strip() for n in range(1, 5)]
    text = "\n\n".join(paragraphs)
    assert 6000 <= len(text) <= 6100
    reply = Text(text, (Choice("Next lesson", "/lesson"),))
    async with bot_replying(settings, channel, reply) as lessonbot:
        await standin.wait_for(lambda: len(standin.texts(CHAT)) >= 2)
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    first, second = standin.called("sendMessage")
    assert len(standin.texts(CHAT)) == 2
    assert all(len(call.params["text"]) <= MAX_TEXT_CHARS for call in (first, second))
    assert first.params["text"].startswith("Paragraph 1:") and second.params["text"].rstrip().endswith("grow.")
    assert "\n\n".join([first.params["text"], second.params["text"]]) == text
    assert "reply_markup" not in first.params
    assert second.reply_markup == {"inline_keyboard": [[{"text": "Next lesson", "callback_data": "/lesson"}]]}
    assert row.status == "sent" and row.platform_message_id == str(second.result["message_id"])


async def test_a_failed_second_part_is_retried_without_repeating_the_first(settings, channel, standin):
    text = "First part. " * 300 + "\n\n" + "Second part. " * 300
    standin.fail("sendMessage", None, Fault.server_error())  # the first part goes through, the second fails once
    async with bot_replying(settings, channel, Text(text)) as lessonbot:
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 2)
        await lessonbot.settle()
    texts = standin.texts(CHAT)
    assert texts[0].startswith("First part.") and texts[1].startswith("Second part.")
    assert len(standin.called("sendMessage", ok=False)) == 1


async def test_429_storm_delays_the_reply_without_losing_or_doubling_it(settings, channel, standin, caplog):
    caplog.set_level("INFO", logger="bot.dispatcher")
    standin.fail("sendMessage", *[Fault.too_many_requests(retry_after=1)] * 3)
    started = time.monotonic()
    async with bot_replying(settings, channel, Text("Your lesson is ready.")) as lessonbot:
        await standin.wait_for(lambda: standin.texts(CHAT), timeout=15)
        delivered_after = time.monotonic() - started
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    assert standin.texts(CHAT) == ["Your lesson is ready."]
    assert len(standin.called("sendMessage", ok=False)) == 3
    assert delivered_after >= 2.5  # three retry_after waits of 1 s each
    postponed = [record.error for record in caplog.records if record.getMessage() == "send postponed"]
    asked = [error for error in postponed if error.startswith("Telegram asked to slow down")]
    assert len(asked) == 3, postponed
    # waits Telegram asks for do not count as tries; a failure of another kind does (on a busy machine, a request to
    # the stand-in may time out)
    assert row.status == "sent" and row.attempts == 1 + len(postponed) - len(asked), postponed


async def test_server_errors_are_retried(settings, channel, standin):
    standin.fail("sendMessage", Fault.server_error(), Fault.server_error())
    async with bot_replying(settings, channel, Text("Hello again")) as lessonbot:
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    assert standin.texts(CHAT) == ["Hello again"]
    assert row.status == "sent" and row.attempts == 3


async def test_a_send_that_times_out_is_retried(settings, channel, standin):
    standin.fail("sendMessage", Fault.no_answer())
    async with bot_replying(settings, channel, Text("Are you there?")) as lessonbot:
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    assert standin.texts(CHAT) == ["Are you there?"]
    assert [call.outcome for call in standin.called("sendMessage", ok=None)] == ["504", "ok"]
    assert "Timed out" in (row.last_error or "")


async def test_blocked_by_the_user_is_dead_lettered_at_once(settings, channel, standin):
    standin.fail("sendMessage", Fault.blocked())
    async with bot_replying(settings, channel, Text("Still there?")) as lessonbot:
        await standin.wait_for(lambda: standin.called("sendMessage", ok=None))
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    assert row.status == "dead" and row.attempts == 1
    assert "bot was blocked by the user" in row.last_error
    assert standin.texts(CHAT) == []


async def test_a_reply_to_a_forum_topic_deleted_meanwhile_goes_to_the_group_once(settings, channel, standin, caplog):
    """Bo asked in a forum topic that was deleted before the answer went: Telegram refuses the send to the topic
    ("message thread not found"), so the answer goes to the group itself, once, in all its parts, and the next
    reply to that topic goes straight there; the fallback is logged."""
    caplog.set_level("INFO", logger="channels.telegram")
    group, topic = "-1001234567890", "topic:7"
    long = "A parcel text is a common lure. " * 200  # two messages
    standin.fail("sendMessage", Fault.topic_gone())

    async def respond(turn: Turn) -> None:
        turn.send(Text(long, (Choice("Next", "/next"),)))

    lessonbot = Lessonbot(settings, [channel], respond=respond)
    lessonbot.start()
    try:
        for asked in ("first", "second"):
            await lessonbot.receive(InboundMessage(
                channel="telegram", platform_id=uuid.uuid4().hex, chat_id=group, sender_id="42", text=asked,
                meta={REPLY_ADDRESS: topic, CHAT_TYPE: "supergroup"},
            ))
            await lessonbot.settle()
        rows = await outbox(lessonbot)
    finally:
        await lessonbot.stop()
        await channel.close()
    calls = standin.called("sendMessage", ok=None)
    assert [(call.params.get("message_thread_id"), call.ok) for call in calls] == [
        ("7", False), (None, True), (None, True), (None, True), (None, True)]
    assert [row.status for row in rows] == ["sent", "sent"]
    assert calls[2].reply_markup and calls[4].reply_markup and not calls[1].reply_markup
    gone = [record for record in caplog.records if "topic" in record.getMessage() and "group" in record.getMessage()]
    assert len(gone) == 1 and gone[0].levelname == "WARNING", [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("fault", [
    Fault.blocked(), Fault(403, "Forbidden: user is deactivated"),
    Fault(403, "Forbidden: bot was kicked from the group chat"), Fault.chat_gone(), Fault.muted(), Fault.no_rights(),
], ids=["blocked", "deactivated", "kicked", "chat-not-found", "muted", "no-rights"])
async def test_a_chat_telegram_will_not_deliver_to_is_taken_out_of_what_the_bot_sends_on_its_own(
    settings, channel, standin, fault
):
    """Blocked by the person (403), their account deleted (403 "user is deactivated"), the bot removed from the group
    (403 "kicked"), a chat Telegram no longer finds (a group deleted), or a group where the bot may
    not send (muted by its admins: 400 "not enough rights", "have no rights"): the reply is dead-lettered and the chat
    is marked refused by the platform, so no lesson or announcement is queued for it day after day."""
    standin.fail("sendMessage", fault)
    async with bot_replying(settings, channel, Text("Your lesson is ready.")) as lessonbot:
        await standin.wait_for(lambda: standin.called("sendMessage", ok=None))
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == str(CHAT)))
    assert row.status == "dead"
    assert chat.refused_by_platform and chat.opted_out_at is not None


async def test_a_group_where_the_bot_may_not_send_documents_still_gets_its_text(settings, channel, standin, tmp_path):
    """The group's admins took only the bot's right to send documents (400 "not enough rights to send documents"):
    that document is dead-lettered, but the chat is not refused, and the text after it still goes."""
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(b"%PDF-1.4 a certificate")
    standin.fail("sendDocument", Fault.no_documents())
    replies = (Document("certificate.pdf", caption="Well done!", path=str(certificate), media_type="application/pdf"),
               Text("Your next lesson comes tomorrow."))
    async with bot_replying(settings, channel, *replies) as lessonbot:
        await standin.wait_for(lambda: standin.called("sendMessage"))
        await lessonbot.settle()
        rows = await outbox(lessonbot)
        async with lessonbot.db.sessions() as session:
            chat = await session.scalar(select(Conversation).where(Conversation.chat_id == str(CHAT)))
    assert [row.status for row in rows] == ["dead", "sent"]
    assert not chat.refused_by_platform and chat.opted_out_at is None
    assert standin.texts(CHAT) == ["Your next lesson comes tomorrow."]


async def test_documents_from_disk_and_by_url(settings, channel, standin, tmp_path):
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(b"%PDF-1.4 a certificate")
    caption = "Well done & congratulations! " * 60  # ~1,700 characters: more than a caption holds
    replies = (
        Document("certificate.pdf", caption=caption, path=str(certificate), media_type="application/pdf"),
        Document("handout.pdf", caption="<Handout>", url="https://example.org/handout.pdf"),
    )
    async with bot_replying(settings, channel, *replies) as lessonbot:
        await standin.wait_for(lambda: len(standin.called("sendDocument")) == 2)
        await lessonbot.settle()
        rows = await outbox(lessonbot)
    upload, linked = standin.called("sendDocument")
    assert upload.files["document"] == ("certificate.pdf", b"%PDF-1.4 a certificate")
    assert len(upload.params["caption"].replace("&amp;", "&")) <= MAX_CAPTION_CHARS
    assert upload.params["caption"].startswith("Well done &amp; congratulations!")
    [overflow] = standin.texts(CHAT)  # the rest of the caption follows the document as a message
    shown = upload.params["caption"] + " " + overflow
    assert shown.replace("&amp;", "&") == caption.strip()
    assert linked.params["document"] == "https://example.org/handout.pdf"
    assert linked.params["caption"] == "&lt;Handout&gt;"
    assert [row.status for row in rows] == ["sent", "sent"]


async def test_a_caption_continued_in_a_message_keeps_its_paragraphs_as_written(channel, standin, tmp_path):
    """A one-paragraph caption three times too long for a caption continues in one message that reads on as the
    paragraph it is: no blank line where the caption's pieces were cut."""
    handout = tmp_path / "handout.pdf"
    handout.write_bytes(b"%PDF-1.4 a handout")
    caption = " ".join(f"Sentence {n} of what the handout covers." for n in range(90))  # ~3,500 characters
    try:
        await channel.send(Delivery(outbox_id=1, chat_id=str(CHAT), reply=Document(
            "handout.pdf", caption=caption, path=str(handout))))
    finally:
        await channel.close()
    [upload] = standin.called("sendDocument")
    [overflow] = standin.texts(CHAT)
    assert "\n" not in overflow
    assert upload.params["caption"] + " " + overflow == caption


async def test_a_missing_file_is_dead_lettered(settings, channel, standin, tmp_path):
    missing = Document("gone.pdf", path=str(tmp_path / "gone.pdf"))
    async with bot_replying(settings, channel, missing) as lessonbot:
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    assert row.status == "dead" and "cannot be read" in row.last_error
    assert standin.called("sendDocument", ok=None) == []


async def test_a_rejected_token_is_dead_lettered_and_named(settings, standin, caplog):
    wrong = TelegramChannel(token="999:wrong", api_base_url=standin.base_url, timeout=0.5)
    async with bot_replying(settings, wrong, Text("hello")) as lessonbot:
        await lessonbot.settle()
        [row] = await outbox(lessonbot)
    assert row.status == "dead" and "TELEGRAM_BOT_TOKEN" in row.last_error
    assert "999:wrong" not in row.last_error
    assert any("TELEGRAM_BOT_TOKEN" in r.getMessage() for r in caplog.records)


async def test_the_bot_sends_again_after_its_connections_are_closed(channel, standin):
    await channel.send(Delivery(outbox_id=1, chat_id=str(CHAT), reply=Text("before")))
    await channel.close()  # as at shutdown: the Bot's HTTP session goes
    await channel.send(Delivery(outbox_id=2, chat_id=str(CHAT), reply=Text("after")))
    await channel.close()
    assert standin.texts(CHAT) == ["before", "after"]


async def test_an_unreachable_bot_api_is_a_transient_failure():
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    channel = TelegramChannel(token=TOKEN, api_base_url=f"http://127.0.0.1:{port}/bot", timeout=0.5)
    try:
        with pytest.raises(TransientSendError, match="did not answer properly: aiohttp.ClientConnectorError"):
            await channel.send(Delivery(outbox_id=1, chat_id=str(CHAT), reply=Text("anyone?")))
    finally:
        await channel.close()


async def test_a_bot_api_that_never_completes_the_handshake_times_out_even_with_no_pool_timeout():
    """python-telegram-bot may pass pool_timeout=None (wait for a free connection as long as it takes): the connect
    itself stays bounded by the connect timeout, as over aiohttp, instead of waiting for the TLS handshake for ever."""
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # says nothing

    held: list[asyncio.StreamWriter] = []
    listening = await asyncio.start_server(accept, "127.0.0.1", 0)
    request = AiohttpRequest(connect_timeout=0.3, read_timeout=5)
    try:
        port = listening.sockets[0].getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimedOut):
            await request.post(f"https://127.0.0.1:{port}/bot{TOKEN}/sendMessage",
                               RequestData([RequestParameter("chat_id", CHAT, None)]), pool_timeout=None)
        assert time.monotonic() - started < 3
    finally:
        await request.shutdown()
        listening.close()
        for writer in held:
            writer.close()


async def test_a_redirect_from_the_bot_api_is_a_network_error_not_followed():
    """As over httpx, a redirect is an answer, not followed: followed, the POST became a GET without its parameters
    and whatever answered that was taken for the send's result (a reply marked sent that never went out)."""
    followed: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/elsewhere{request.path}")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.method)
        return web.json_response({"ok": True, "result": {"message_id": 1, "date": 0, "chat": {"id": CHAT,
                                                                                               "type": "private"}}})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", moved)
    app.router.add_route("*", "/elsewhere/{rest:.*}", elsewhere)
    async with TestServer(app, host="127.0.0.1") as server:
        channel = TelegramChannel(token=TOKEN, api_base_url=str(server.make_url("/bot")), timeout=2)
        try:
            with pytest.raises(NetworkError, match=r"Found \(302\)"):  # as the dispatcher sees it: try again later
                await channel.bot.send_message(chat_id=CHAT, text="moved?")
        finally:
            await channel.bot.request.shutdown()  # (the Bot was not initialized: its shutdown would do nothing)
    assert followed == []


async def test_the_bot_goes_through_the_proxy_in_the_environment(standin, monkeypatch):
    # The stand-in, as a forward proxy, receives the request for a host that does not exist.
    monkeypatch.setenv("HTTP_PROXY", standin.base_url.rsplit("/", 1)[0])
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = TelegramChannel(token=TOKEN, api_base_url="http://api.telegram.invalid/bot", timeout=2)
    try:
        await proxied.send(Delivery(outbox_id=1, chat_id=str(CHAT), reply=Text("through the proxy")))
    finally:
        await proxied.close()
    assert standin.texts(CHAT) == ["through the proxy"]


# limits ---------------------------------------------------------------------------------------------------------------


def test_rate_limits_per_chat_per_group_and_overall():
    channel = TelegramChannel(token=TOKEN)
    assert channel.rate_limits("1111111") == (
        RateLimit("telegram:global", 30, 1.0, shared=True), RateLimit("telegram:chat:1111111", 1, 1.0),
    )
    assert RateLimit("telegram:group:-100123", 20, 60.0) in channel.rate_limits("-100123")


@pytest.mark.parametrize("timedelta_env", [False, True])
def test_retry_after_in_seconds_whatever_ptb_returns(timedelta_env, monkeypatch):
    if timedelta_env:
        monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB's own switch: retry_after becomes a timedelta
    assert retry_after_seconds(RetryAfter(3)) == 3.0
    assert retry_after_seconds(RetryAfter(timedelta(seconds=1.5))) == 1.5


def test_a_bot_api_request_open_in_one_event_loop_is_refused_in_another_until_shut_down():
    """A session belongs to the loop it was made in: used from a second loop while still open, the request says so
    instead of dropping the session with its sockets open; shut down first, it opens a new one there."""
    import asyncio

    from channels.telegram.request import AiohttpRequest

    request = AiohttpRequest()
    asyncio.run(request.initialize())
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(request.initialize())

    async def shut_down_then_open() -> None:
        await request.shutdown()
        await request.initialize()
        await request.shutdown()

    asyncio.run(shut_down_then_open())


@pytest.mark.parametrize(
    "answer",
    [
        b'{"ok": true, "result": {"message_id": 7, "chat": {"id": -1001234567890}, "text": "caf\xc3\xa9"}}',
        b'{"ok": true, "result": {"id": 18446744073709551616}}',  # an integer past 64 bits, kept exact
        b'{"ok": false, "error_code": 429, "parameters": {"retry_after": 3}}',
    ],
)
def test_the_bot_apis_answer_is_read_as_python_telegram_bot_reads_it(answer):
    assert AiohttpRequest.parse_json_payload(answer) == BaseRequest.parse_json_payload(answer)


def test_an_answer_that_is_no_json_raises_python_telegram_bots_own_error():
    with pytest.raises(TelegramError, match="Invalid server response"):
        AiohttpRequest.parse_json_payload(b"<html>Bad Gateway</html>")


async def test_a_code_block_too_long_for_one_message_is_code_in_each_part(channel, standin):
    code = "\n".join(f"total = total + row_{n}  # __add__ of *row* {n} < limit" for n in range(120))
    reply = Text("# Sums\n\nRun this:\n\n```python\n" + code + "\n```\n\n- done")
    await channel.send(Delivery(outbox_id=1, chat_id=str(CHAT), reply=reply))
    texts = standin.texts(CHAT)
    shown_chars = [len(html.unescape(re.sub(r"<[^>]+>", "", text))) for text in texts]  # as Telegram counts
    assert len(texts) == 2 and all(chars <= MAX_TEXT_CHARS for chars in shown_chars)
    first_line = "total = total + row_0  # __add__ of *row* 0 &lt; limit\n"
    assert texts[0].startswith(f"<b>Sums</b>\n\nRun this:\n\n<pre><code>{first_line}")
    assert texts[0].endswith("</code></pre>") and texts[1].startswith("<pre><code>total = total + row_")
    assert texts[1].endswith("</code></pre>\n\n• done")
    shown = "\n".join(text.split("<pre><code>")[1].split("</code></pre>")[0] for text in texts)
    assert shown == code.replace("<", "&lt;")
    await channel.close()


async def test_a_reply_to_a_group_that_became_a_supergroup_goes_to_the_supergroup(channel, standin):
    """Telegram answers a send to the group's old id with its supergroup's id (ChatMigrated): the reply goes there,
    its next part and the next reply too, without asking the old id again."""
    group, supergroup = "-4001", "-1004001"
    standin.fail("sendMessage", Fault.migrated(int(supergroup)))
    try:
        long = "A parcel text is a common lure. " * 200  # two messages
        await channel.send(Delivery(outbox_id=1, chat_id=group, reply=Text(long), attempt=1))
        await channel.send(Delivery(outbox_id=2, chat_id=group, reply=Text("and another"), attempt=1))
    finally:
        await channel.close()
    calls = [call for call in standin.calls if call.method == "sendMessage"]
    assert [(call.params["chat_id"], call.ok) for call in calls] == [
        (group, False), (supergroup, True), (supergroup, True), (supergroup, True)]
    assert standin.texts(supergroup)[-1] == "and another"


async def test_typing_in_a_group_that_became_a_supergroup_shows_in_the_supergroup(channel, standin):
    """Once Telegram said the group moved, "typing…" goes to the supergroup too, not to the old id it refuses."""
    group, supergroup = "-4002", "-1004002"
    standin.fail("sendMessage", Fault.migrated(int(supergroup)))
    try:
        await channel.send(Delivery(outbox_id=1, chat_id=group, reply=Text("Welcome"), attempt=1))
        await channel.show_typing(group)
    finally:
        await channel.close()
    assert [(call.params["chat_id"], call.ok) for call in standin.called("sendChatAction", ok=None)] == [
        (supergroup, True)]


@pytest.mark.parametrize(("written", "shown"), [
    ("[the course page for more](https://example.com/x)",
     '<a href="https://example.com/x">the course page for more</a>'),
    ("`pip install --upgrade lessons`", "<code>pip install --upgrade lessons</code>"),
], ids=["link", "code"])
async def test_a_link_or_code_where_a_long_sentence_is_split_stays_whole_in_one_part(written, shown, channel, standin):
    """A sentence too long for one message is split between words; a link's text or a code span that spans words is
    not cut there, so it shows as a link or as code, not as its Markdown."""
    text = "word " * 816 + "see " + written + " now"
    try:
        await channel.send(Delivery(outbox_id=1, chat_id=str(CHAT), reply=Text(text)))
    finally:
        await channel.close()
    first, second = standin.texts(CHAT)
    assert shown in first or shown in second
    assert "[" not in first + second and "`" not in first + second


async def test_a_group_that_became_a_supergroup_is_paced_as_one_chat_with_it(channel, standin):
    """What is still queued for the group's old id and what the supergroup's own conversation sends go to one chat:
    Telegram's 1 a second and 20 a minute hold for both together, not for each."""
    group, supergroup = "-4003", "-1004003"
    standin.fail("sendMessage", Fault.migrated(int(supergroup)))
    try:
        await channel.send(Delivery(outbox_id=1, chat_id=group, reply=Text("Welcome"), attempt=1))
    finally:
        await channel.close()
    assert channel.rate_limits(group) == channel.rate_limits(supergroup)


async def test_a_reply_to_a_forum_topic_closed_meanwhile_goes_to_the_group_and_later_ones_try_the_topic(channel,
                                                                                                     standin):
    """The admins closed the topic Bo asked in before its answer went: the answer goes to the group itself; a topic
    closed may be opened again, so the next reply to it tries the topic first."""
    group = "-1001234567890"
    standin.fail("sendMessage", Fault.topic_closed())
    try:
        for outbox_id in (1, 2):
            await channel.send(Delivery(outbox_id=outbox_id, chat_id=group, reply=Text("The answer"),
                                        reply_address="topic:7"))
    finally:
        await channel.close()
    calls = standin.called("sendMessage", ok=None)
    assert [(call.params.get("message_thread_id"), call.ok) for call in calls] == [
        ("7", False), (None, True), ("7", True)]
