"""Sending replies with slack_sdk against the local Slack Web API: Block Kit, files, and every way a send fails."""

from __future__ import annotations

import asyncio
import socket
import time
from itertools import pairwise

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.channel import Delivery, PartsSent, PermanentSendError, RateLimited, TransientSendError
from bot.core import Lessonbot
from bot.messages import Choice, Document, Text, reply_from_payload
from channels.slack import SlackChannel
from standins.slack import BOT_TOKEN, SIGNING_SECRET, Fault
from storage.models import OutboxMessage
from tests.support import message

CHAT = "T111:D0DM1"


def slack(base_url: str, *, timeout: float = 5.0) -> SlackChannel:
    return SlackChannel(
        signing_secret=SIGNING_SECRET, bot_token=BOT_TOKEN, api_base_url=base_url, max_body_bytes=65536,
        timeout=timeout,
    )


def delivery(
    reply, *, outbox_id: int = 1, attempt: int = 1, chat_id: str = CHAT, parts: PartsSent | None = None
) -> Delivery:
    return Delivery(outbox_id=outbox_id, chat_id=chat_id, reply=reply, attempt=attempt, parts=parts or PartsSent())


async def test_a_reply_is_posted_as_block_kit_with_its_fallback_text(standin):
    ts = await slack(standin.base_url).send(delivery(Text("Pick <one> & go", (Choice("A", "a"), Choice("B", "b")))))
    [call] = standin.posted()
    assert call.token == BOT_TOKEN
    assert call.params["channel"] == "D0DM1"  # the workspace prefix of chat_id is ours, not Slack's
    assert call.params["text"] == "Pick &lt;one&gt; &amp; go"
    assert [b["type"] for b in call.params["blocks"]] == ["section", "actions"]
    assert ts == call.answer["ts"]


def test_every_reply_counts_against_one_per_second_per_channel():
    channel = slack("http://127.0.0.1:9/api/")
    assert [(r.key, r.count, r.seconds) for r in channel.rate_limits(CHAT)] == [("slack:channel:T111:D0DM1", 1, 1.0)]


async def test_a_429_becomes_rate_limited_with_slacks_retry_after(standin):
    standin.fail("chat.postMessage", Fault.rate_limited(retry_after=7))
    with pytest.raises(RateLimited) as caught:
        await slack(standin.base_url).send(delivery(Text("hi")))
    assert caught.value.retry_after == 7


async def test_a_429_on_one_members_private_message_holds_the_workspaces_and_not_response_urls(standin):
    """chat.postEphemeral's Tier 4 counts the workspace's calls: after a 429 for Bea, Cal's private message is not
    tried (RateLimited for what is left of the wait) until it is over; an answer through a response_url, which no
    tier counts, goes at once."""
    channel = slack(standin.base_url)
    standin.fail("chat.postEphemeral", Fault.rate_limited(retry_after=30))
    with pytest.raises(RateLimited) as bea:
        await channel.send(delivery(Text("welcome, Bea"), chat_id="T111:C111@UBEA"))
    with pytest.raises(RateLimited) as cal:
        await channel.send(delivery(Text("welcome, Cal"), chat_id="T111:C111@UCAL"))
    assert bea.value.retry_after == 30 and 25 < cal.value.retry_after <= 30
    assert [c.outcome for c in standin.calls if c.method == "chat.postEphemeral"] == ["429 ratelimited"]
    answer = Delivery(outbox_id=3, chat_id="T111:C111@UDAN", reply=Text("right!"), attempt=1, parts=PartsSent(),
                      reply_address=standin.response_url("C111", "UDAN"))
    await channel.send(answer)
    assert [c.params.get("text") for c in standin.calls if c.method == "response_url"] == ["right!"]
    # Another workspace's members are not held.
    await channel.send(delivery(Text("welcome, Eve"), chat_id="T222:C9@UEVE"))
    assert [c.outcome for c in standin.calls if c.method == "chat.postEphemeral"] == ["429 ratelimited", "ok"]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(standin, status):
    standin.fail("chat.postMessage", Fault.server_error(status))
    with pytest.raises(TransientSendError) as caught:
        await slack(standin.base_url).send(delivery(Text("hi")))
    assert not isinstance(caught.value, RateLimited)
    assert str(status) in str(caught.value)


async def test_slacks_own_internal_error_is_transient(standin):
    standin.fail("chat.postMessage", Fault.refused("internal_error"))
    with pytest.raises(TransientSendError):
        await slack(standin.base_url).send(delivery(Text("hi")))


@pytest.mark.parametrize(
    "error", ["channel_not_found", "not_in_channel", "account_inactive", "invalid_auth", "is_archived"]
)
async def test_errors_that_will_not_go_away_are_permanent(standin, error):
    standin.fail("chat.postMessage", Fault.refused(error))
    with pytest.raises(PermanentSendError, match=error):
        await slack(standin.base_url).send(delivery(Text("hi")))


async def test_a_revoked_token_is_permanent(standin):
    channel = SlackChannel(signing_secret=SIGNING_SECRET, bot_token="xoxb-revoked", api_base_url=standin.base_url,
                           max_body_bytes=65536)
    with pytest.raises(PermanentSendError, match="invalid_auth"):
        await channel.send(delivery(Text("hi")))


async def test_a_slow_answer_times_out_as_transient_without_retrying_inside_send(standin):
    standin.fail("chat.postMessage", Fault.slow(1.0))
    started = time.monotonic()
    with pytest.raises(TransientSendError, match="unreachable"):
        await slack(standin.base_url, timeout=0.3).send(delivery(Text("hi")))
    assert time.monotonic() - started < 0.9
    assert len([c for c in standin.calls if c.method == "chat.postMessage"]) == 1


async def test_nobody_listening_is_transient():
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientSendError, match="unreachable"):
        await slack(f"http://127.0.0.1:{port}/api/").send(delivery(Text("hi")))


async def test_a_long_reply_goes_out_in_order_and_a_retry_resumes_after_the_parts_already_posted(standin):
    paragraphs = [f"Paragraph {i}. " + "word " * 580 for i in range(120)]  # 120 sections: three messages
    reply = Text("\n\n".join(paragraphs))
    channel = slack(standin.base_url)
    # The first message goes out, the second is refused.
    standin.fail("chat.postMessage", Fault.none(), Fault.rate_limited(retry_after=1))
    saved: list[list[str]] = []

    async def save(ids: list[str]) -> None:  # what the dispatcher writes to the outbox row
        saved.append(ids)

    with pytest.raises(RateLimited):
        await channel.send(delivery(reply, outbox_id=42, parts=PartsSent(save=save)))
    assert len(standin.posted()) == 1 and len(saved) == 1
    # The retry is handed the row's parts, as any process's dispatcher would read them.
    last_ts = await channel.send(delivery(reply, outbox_id=42, attempt=2, parts=PartsSent(list(saved[-1]))))
    posted = standin.posted()
    assert len(posted) == 3  # the first part was not posted again
    firsts = [c.params["blocks"][0]["text"]["text"] for c in posted]
    assert [f.split(".")[0] for f in firsts] == ["Paragraph 0", "Paragraph 50", "Paragraph 100"]
    assert last_ts == posted[-1].answer["ts"]
    assert all(len(c.params["blocks"]) <= 50 for c in posted)


async def test_a_threaded_reply_posts_its_follow_ups_in_the_posts_thread_and_a_retry_finds_the_thread(standin):
    reply = Text.threaded("📘 Lesson 1: Levers", ["Part one.", "Part two.", "Part three."],
                          (Choice("Quiz me", "team:take:1:1"),))
    assert reply.text == "📘 Lesson 1: Levers\n\nPart one.\n\nPart two.\n\nPart three."  # whole, elsewhere
    assert reply_from_payload(reply.to_payload()) == reply
    channel = slack(standin.base_url)
    standin.fail("chat.postMessage", Fault.none(), Fault.none(), Fault.server_error())  # the second part fails
    saved: list[list[str]] = []

    async def save(ids: list[str]) -> None:
        saved.append(ids)

    with pytest.raises(TransientSendError):
        await channel.send(delivery(reply, chat_id="T111:C0TEAM", parts=PartsSent(save=save)))
    await channel.send(delivery(reply, chat_id="T111:C0TEAM", attempt=2, parts=PartsSent(list(saved[-1]))))
    post, *thread = standin.posted("C0TEAM")
    assert post.params["text"] == "📘 Lesson 1: Levers" and "thread_ts" not in post.params
    assert post.params["blocks"][-1]["elements"][0]["value"] == "team:take:1:1"  # the button is on the post
    assert [c.params["text"] for c in thread] == ["Part one.", "Part two.", "Part three."]
    assert {c.params["thread_ts"] for c in thread} == {post.answer["ts"]}
    gaps = [later.at - earlier.at for earlier, later in pairwise(standin.posted("C0TEAM")[-2:])]
    assert all(gap >= 0.9 for gap in gaps), gaps  # one message a second in the channel, within the reply too


async def test_a_document_file_is_uploaded_with_files_upload_v2(standin, tmp_path):
    path = tmp_path / "certificate.pdf"
    path.write_bytes(b"%PDF-1.4 certificate of completion")
    file_id = await slack(standin.base_url).send(
        delivery(Document("certificate.pdf", caption="Well done <you>!", path=str(path), media_type="application/pdf"))
    )
    assert standin.uploads[file_id] == path.read_bytes()
    [complete] = [c for c in standin.calls if c.method == "files.completeUploadExternal"]
    assert complete.token == BOT_TOKEN
    assert complete.params["channel_id"] == "D0DM1"
    assert complete.params["initial_comment"] == "Well done &lt;you&gt;!"
    assert [c.method for c in standin.calls] == [
        "files.getUploadURLExternal", "files.completeUploadExternal",
    ]


@pytest.mark.parametrize("chat_id", ["T111:C111@UANN", "T111:UANN"])
async def test_a_document_for_one_member_is_uploaded_to_their_direct_messages_never_to_the_channel(
        chat_id, standin, tmp_path):
    """A member's file (an /export, a certificate) for their private place in a channel, or for their own address:
    Slack shares files only into conversations, so it goes to the DM the bot opens with them, not the channel."""
    path = tmp_path / "export.json"
    path.write_bytes(b'{"learner": "ann"}')
    file_id = await slack(standin.base_url).send(
        delivery(Document("export.json", path=str(path), media_type="application/json"), chat_id=chat_id)
    )
    assert standin.uploads[file_id] == path.read_bytes()
    [opened] = [c for c in standin.calls if c.method == "conversations.open"]
    assert opened.params["users"] == "UANN"
    [complete] = [c for c in standin.calls if c.method == "files.completeUploadExternal"]
    assert complete.ok and complete.params["channel_id"] == opened.answer["channel"]["id"] == "DUANN"


async def test_a_file_shared_into_what_is_no_conversation_is_refused_as_slack_refuses_it(standin, tmp_path):
    """The stand-in shares files only into conversations it would know, as Slack does: "C111@UANN" is none."""
    path = tmp_path / "export.json"
    path.write_bytes(b"{}")
    client = AsyncWebClient(token=BOT_TOKEN, base_url=standin.base_url)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.files_upload_v2(channel="C111@UANN", content=path.read_bytes(), filename="export.json")


async def test_a_document_that_is_not_there_is_permanent(standin, tmp_path):
    with pytest.raises(PermanentSendError, match="cannot be read"):
        await slack(standin.base_url).send(delivery(Document("gone.pdf", path=str(tmp_path / "gone.pdf"))))
    assert standin.calls == []


async def test_a_document_with_only_a_url_is_sent_as_a_link(standin):
    handout = Document("handout.pdf", caption="Read this", url="https://example.com/h.pdf")
    await slack(standin.base_url).send(delivery(handout))
    [call] = standin.posted()
    assert call.params["text"] == "Read this\n<https://example.com/h.pdf|handout.pdf>"


async def test_a_reply_slack_cannot_show_is_permanent(standin):
    with pytest.raises(PermanentSendError, match="2,000"):
        await slack(standin.base_url).send(delivery(Text("Pick", (Choice("huge", "v" * 2001),))))
    assert standin.calls == []


# through the dispatcher ----------------------------------------------------------------------------------------------


async def outbox(bot: Lessonbot) -> list[OutboxMessage]:
    async with bot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_a_429_storm_is_waited_out_at_slacks_pace_and_nothing_is_lost(settings, standin):
    channel = slack(standin.base_url)
    bot = Lessonbot(settings, [channel])
    standin.fail("chat.postMessage", *[Fault.rate_limited(retry_after=1)] * 3)
    bot.start()
    try:
        for n in range(2):
            await bot.receive(message("/help", channel="slack", chat=CHAT, sender="T111/U1", platform_id=f"Ev{n}"))
        await standin.wait_for(lambda: len(standin.posted()) == 2, timeout=20)
        await bot.settle()
    finally:
        await bot.stop()
    calls = [c for c in standin.calls if c.method == "chat.postMessage"]
    assert [c.outcome for c in calls] == ["429 ratelimited"] * 3 + ["ok"] * 2
    gaps = [later.at - earlier.at for earlier, later in pairwise(calls)]
    assert all(gap >= 0.9 for gap in gaps[:3]), gaps  # Retry-After: 1 honoured each time
    rows = await outbox(bot)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 2  # a 429 does not count as a try


async def test_stopping_mid_send_ends_every_send_and_leaves_the_reply_cut_short_for_a_retry(settings, standin):
    """The app stops while Slack is slow to answer: stop() gives the send a moment (`stop_grace`), then cancels it.
    Nothing of the dispatcher runs on after stop() (it used to go on sending, through closed channels and a closed
    database); the reply cut short stays claimed, sent again once its lease runs out, and the rest wait their turn."""
    bot = Lessonbot(settings, [slack(standin.base_url)])
    bot.dispatcher.stop_grace = 0.05
    standin.fail("chat.postMessage", Fault.slow(2))
    bot.start()
    try:
        for n in range(2):
            await bot.receive(message("/help", channel="slack", chat=CHAT, sender="T111/U1", platform_id=f"Ev{n}"))
        await standin.wait_for(lambda: standin.calls)
        await bot.worker.idle()
    finally:
        await bot.stop()
    assert not [task for task in asyncio.all_tasks() if "OutboxDispatcher" in repr(task.get_coro())]
    bot.dispatcher.notify(1)  # a late notice starts nothing
    assert not [task for task in asyncio.all_tasks() if "OutboxDispatcher" in repr(task.get_coro())]
    rows = await outbox(bot)
    assert rows[0].status == "sending" and {row.status for row in rows[1:]} == {"pending"}
    assert len(standin.calls) == 1


async def test_5xx_is_retried_and_a_permanent_error_is_dead_lettered_at_once(settings, standin):
    channel = slack(standin.base_url)
    bot = Lessonbot(settings, [channel])
    standin.fail("chat.postMessage", Fault.server_error(503), Fault.server_error(500))
    standin.missing_channels.add("C0GONE")
    bot.start()
    try:
        await bot.receive(message("/help", channel="slack", chat=CHAT, sender="T111/U1", platform_id="Ev1"))
        await standin.wait_for(lambda: standin.posted(), timeout=20)
        await bot.receive(message("/help", channel="slack", chat="T111:C0GONE", sender="T111/U1", platform_id="Ev2"))
        await bot.settle()
    finally:
        await bot.stop()
    by_chat = {row.chat_id: row for row in await outbox(bot)}
    assert (by_chat[CHAT].status, by_chat[CHAT].attempts) == ("sent", 3)
    assert (by_chat["T111:C0GONE"].status, by_chat["T111:C0GONE"].attempts) == ("dead", 1)
    assert "channel_not_found" in by_chat["T111:C0GONE"].last_error
    assert [c.outcome for c in standin.calls if c.method == "chat.postMessage"] == [
        "503", "500", "ok", "channel_not_found",
    ]
