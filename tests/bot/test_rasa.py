"""Lessonbot inside a Rasa assistant: the action server (`lessonbot rasa-actions`, rasa-sdk's executor on our app)
called over HTTP by a Rasa server stand-in exactly as Rasa calls it (rasa-sdk's webhook JSON, its trackers built from
rasa-sdk's own event types), and replies Lessonbot sends on its own going out through Rasa's trigger_intent.
Everything between the stand-in and the database is the real pipeline, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import zlib

import httpx
import pytest
import yaml
from rasa_sdk import __version__ as rasa_sdk_version
from rasa_sdk.events import UserUttered
from rasa_sdk.interfaces import Tracker
from sqlalchemy import select
from starlette.applications import Starlette

from authoring.format import load_course
from authoring.indexing import ingest_course
from bench.processes import free_port
from bot.channel import Delivery, PermanentSendError, RateLimit, RateLimited, TransientSendError
from bot.cli import main
from bot.config import knowledge_settings
from bot.core import Lessonbot
from bot.messages import Choice, Document, Text, literal
from bot.rasa_actions import (
    ACTIONS,
    ActionDesk,
    action_executor,
    action_routes,
    create_action_app,
    learner_slots,
)
from channels.rasa import RasaChannel
from channels.rasa.channel import MessageSeal
from channels.rasa.files import FileLinks
from channels.rasa.render import bot_message, button_payload
from channels.rasa.tracker import call_id
from scheduler.context import JobContext
from scheduler.planner import DueLesson, push_lesson
from standins.rasa import ActionRun, RasaServerStandIn
from storage.learners import Learner
from storage.models import ChannelIdentity, InboundMessage, OutboxMessage, utcnow
from storage.outbox import IN_RESPONSE, OutboxStatus
from tests.bot.rasa_support import (
    ACTIONS_TOKEN,
    EXAMPLE,
    button,
    example_domain,
    listening,
    onboard,
    port_of,
    rasa_assistant,
    serving,
)
from tests.dialogs.learning_support import PAID, SAMPLE, import_sample

ANSWER, NEXT = "action_lessonbot_answer", "action_lessonbot_next"

SEAL = MessageSeal("test-secret-key-0123456789")  # what the sender seals, the action server opens


def slots(run: ActionRun) -> dict[str, object]:
    return {event["name"]: event["value"] for event in run.events if event["event"] == "slot"}


# A learner's whole way, by action calls alone -------------------------------------------------------------------------


async def test_a_learner_is_enrolled_taught_quizzed_and_answered_by_action_calls_alone(settings):
    await asyncio.to_thread(ingest_course, load_course(SAMPLE), knowledge_settings(settings))
    async with rasa_assistant(settings) as (rasa, bot):
        first = await rasa.say("u1", "hi", action=ANSWER, intent="greet")
        assert first.status == 200 and first.texts[0].startswith("Hi! I'm Lessonbot")
        assert slots(first)["lessonbot_awaiting"] == "onboarding" and slots(first)["lessonbot_set_up"] is False

        done = await onboard(rasa, "u1")
        assert done.texts[0].startswith("All set, Ann!")
        assert slots(done) == {
            "lessonbot_set_up": True, "lessonbot_awaiting": None, "lessonbot_course": "spot-phishing",
            "lessonbot_timezone": "Europe/Lisbon", "lessonbot_lesson_time": "08:00", "lessonbot_error": None,
        }

        part = await rasa.press("u1", button(done, "Start my first lesson"), action=ANSWER)
        assert part.texts[0].startswith("📘 Lesson 1 of 5") and part.texts[0].endswith("(1/3)")
        part = await rasa.say("u1", "next", action=NEXT, intent="ask_next")
        assert part.texts[0].endswith("(2/3)")
        part = await rasa.press("u1", button(part, "Next ▸"), action=ANSWER)
        quiz = await rasa.press("u1", button(part, "Take the quiz ▸"), action=ANSWER)
        assert quiz.texts[-1].startswith("Question 1 of 3") and slots(quiz)["lessonbot_awaiting"] == "quiz"

        graded = await rasa.press("u1", button(quiz, "Urgency"), action=ANSWER)
        assert graded.texts[0].startswith("✅") and graded.texts[1].startswith("Question 2 of 3")
        graded = await rasa.press("u1", button(graded, "True"), action=ANSWER)
        assert graded.texts[0].startswith("❌ Not quite. The answer is: False")
        typed = await rasa.say("u1", "smishing", action=ANSWER)  # a typed answer
        assert typed.texts[0].startswith("✅") and slots(typed)["lessonbot_awaiting"] is None

        progress = await rasa.say("u1", "how am I doing", action="action_lessonbot_progress", intent="ask_progress")
        assert "Lessons: 1 of 5 done" in progress.texts[0] and "2 of 3 answers right" in progress.texts[0]

        answer = await rasa.say("u1", "what is smishing?", action="action_lessonbot_ask",
                                intent="ask_course_question")
        assert answer.texts[0].startswith("From your course:") and "smishing" in answer.texts[0]

        async with bot.db.sessions() as session:
            identity = await session.scalar(select(ChannelIdentity).where(ChannelIdentity.channel == "rasa"))
            learner = await session.get(Learner, identity.user_id)
            unsent = await session.scalar(
                select(OutboxMessage.id).where(OutboxMessage.status != OutboxStatus.SENT).limit(1)
            )
        assert identity.external_id == "u1" and learner.points > 0
        assert unsent is None  # every reply was handed back in an action's response
        assert not rasa.triggered  # and none went out another way


async def test_the_ask_action_takes_even_a_command_word_as_a_question(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        await onboard(rasa, "u1")
        asked = await rasa.say("u1", "next", action="action_lessonbot_ask", intent="ask_course_question")
        assert not asked.texts[0].startswith("📘")  # not /next: the answerer declines what the course lacks
        after = await rasa.say("u1", "next", action=NEXT)
        assert after.texts[0].startswith("📘 Lesson 1 of 5")


# Retries, order, failures ---------------------------------------------------------------------------------------------


async def test_a_retried_action_call_is_answered_again_without_advancing(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        done = await onboard(rasa, "u1")
        first = await rasa.press("u1", button(done, "Start my first lesson"), action=ANSWER)
        again = await rasa.run_action("u1", ANSWER, again=True)
        assert again.status == 200 and again.responses == first.responses
        following = await rasa.say("u1", "next", action=NEXT)
        assert following.texts[0].endswith("(2/3)")  # part 2, not 3: the retry did not advance the lesson
        async with bot.db.sessions() as session:
            recorded = list(await session.scalars(
                select(InboundMessage.platform_id).where(InboundMessage.channel == "rasa")
            ))
        assert len(recorded) == len(set(recorded)) == len(rasa.action_calls) - 1  # the retry recorded nothing


async def test_the_call_id_is_the_moment_of_the_conversation():
    tracker = Tracker("u1", {}, {"text": "next", "message_id": "m1"},
                      [UserUttered("next", timestamp=1.0)], False, None, {}, "action_listen").current_state()
    assert call_id(NEXT, tracker) == call_id(NEXT, json.loads(json.dumps(tracker)))
    assert call_id(NEXT, tracker) != call_id(ANSWER, tracker)
    later = {**tracker, "events": [*tracker["events"], {"event": "action", "name": NEXT, "timestamp": 2.0}]}
    assert call_id(NEXT, tracker) != call_id(NEXT, later)
    assert len(call_id(NEXT, tracker)) == 64


async def test_a_turn_that_fails_answers_with_the_apology_and_the_error_slot(settings):
    async def broken(turn):
        raise RuntimeError("a bug of ours")

    bot = Lessonbot(settings, [], respond=broken, answers=("rasa",))
    app = Starlette(routes=action_routes(action_executor(ActionDesk(bot, wait_seconds=10))))
    bound = listening()
    port = port_of(bound)
    async with serving(app, bound), RasaServerStandIn(
        action_endpoint=f"http://127.0.0.1:{port}/webhook", domain=example_domain()
    ) as rasa:
        run = await rasa.say("u1", "next", action=NEXT)
    await bot.stop()
    assert run.status == 200
    assert run.texts == ["Sorry, something went wrong on my side while handling that. Please try again in a moment."]
    assert slots(run)["lessonbot_error"] == "failed"
    assert "a bug of ours" not in json.dumps(run.responses)


async def test_an_answer_not_ready_in_time_is_promised_then_sent_through_trigger_intent(settings):
    async with rasa_assistant(settings, rasa_action_timeout_seconds=0.001) as (rasa, bot):
        run = await rasa.say("u1", "hi", action=ANSWER, intent="greet")
        assert run.status == 200
        assert run.texts == ["I'm still working on that; the answer will follow in a moment."]
        assert slots(run) == {"lessonbot_error": "timeout"}
        for _ in range(100):  # held for the call a moment longer, then sent on its own
            if rasa.delivered.get("u1"):
                break
            await asyncio.sleep(0.05)
        [welcome] = rasa.delivered["u1"]
        assert welcome["text"].startswith("Hi! I'm Lessonbot")
        assert welcome["buttons"][0]["title"] == "Yes, let's start"
        # the slots say where the late answer left the learner (the assistant routes their next words by them)
        assert {name: rasa.conversation("u1").slots.get(name) for name in ("lessonbot_awaiting", "lessonbot_error")} \
            == {"lessonbot_awaiting": "onboarding", "lessonbot_error": None}
        pressed = await rasa.press("u1", welcome["buttons"][0], action=ANSWER)  # its buttons work as any other
        assert pressed.status == 200


# Slots ----------------------------------------------------------------------------------------------------------------


async def test_enroll_reads_the_course_slot(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        await import_sample(bot, PAID)
        await onboard(rasa, "u1")
        run = await rasa.say("u1", "I want the passwords course", action="action_lessonbot_enroll", intent="enroll",
                             entities={"lessonbot_course": "passwords"})
        assert run.texts[0].startswith("Saved. Course: Passwords")
        assert slots(run)["lessonbot_course"] == load_course(PAID).id
        lesson = await rasa.say("u1", "next", action=NEXT)
        assert "Passwords" in lesson.texts[0] or "password" in lesson.texts[0].lower()


async def test_someone_new_who_names_a_course_is_set_up_and_not_asked_for_it_again(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        await import_sample(bot, PAID)
        run = await rasa.say("u1", "I want the passwords course", action="action_lessonbot_enroll", intent="enroll",
                             entities={"lessonbot_course": "passwords"})
        assert run.texts[0] == "First, let's set you up: it takes a minute."
        run = await rasa.press("u1", button(run, "Yes, let's start"), action=ANSWER)
        run = await rasa.say("u1", "Ann", action=ANSWER)
        run = await rasa.say("u1", "Lisbon", action=ANSWER)
        run = await rasa.press("u1", button(run, "Yes, that's right"), action=ANSWER)
        run = await rasa.say("u1", "08:00", action=ANSWER)
        run = await rasa.press("u1", button(run, "Every day"), action=ANSWER)
        assert run.texts[-1] == "How much would you like to do each day?"  # the course question is skipped
        assert slots(run)["lessonbot_course"] == "passwords-that-hold"


async def test_enroll_without_a_course_offers_the_courses(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        await onboard(rasa, "u1")
        run = await rasa.say("u1", "change course", action="action_lessonbot_enroll", intent="enroll")
        assert run.texts[-1] == "Which course would you like to take?"
        assert [b["title"] for b in run.responses[-1]["buttons"]] == ["Spot the phish, five minutes a day"]


async def test_settings_read_the_time_zone_and_lesson_time_slots(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        await onboard(rasa, "u1")
        run = await rasa.say("u1", "I moved to Tokyo", action="action_lessonbot_settings", intent="change_settings",
                             entities={"lessonbot_timezone": "Tokyo"})
        assert run.texts[-1].startswith("In Tokyo it is") and slots(run)["lessonbot_awaiting"] == "settings"
        run = await rasa.press("u1", button(run, "Yes, that's right"), action=ANSWER)
        assert run.texts[0].startswith("Saved.") and slots(run)["lessonbot_timezone"] == "Asia/Tokyo"
        # the zone slot still holds hers (the actions set it after every call): the time named now is what changes
        run = await rasa.say("u1", "lessons at 7pm please", action="action_lessonbot_settings",
                             entities={"lessonbot_lesson_time": "7pm"})
        assert run.texts[0].startswith("Saved.") and slots(run)["lessonbot_lesson_time"] == "19:00"
        run = await rasa.say("u1", "my settings", action="action_lessonbot_settings")  # nothing named: the menu
        assert not run.texts[0].startswith(("In Tokyo", "Saved.")) and run.responses[0].get("buttons")


async def test_only_the_slots_the_domain_declares_are_set(settings):
    domain = example_domain()
    del domain["slots"]["lessonbot_timezone"], domain["slots"]["lessonbot_awaiting"]
    async with rasa_assistant(settings) as (rasa, bot):
        rasa.domain = domain
        rasa.conversations.clear()
        run = await rasa.run_action("u2", ANSWER)  # a first call with no words: the welcome
        assert set(slots(run)) == {"lessonbot_set_up", "lessonbot_course", "lessonbot_lesson_time", "lessonbot_error"}


# Sent on Lessonbot's own: trigger_intent ------------------------------------------------------------------------------


async def push_the_lesson_now(bot) -> None:
    """The Rasa learner's lesson queued by the clock, as at their hour, and the dispatcher told."""
    async with bot.db.sessions() as session:
        user_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.channel == "rasa"))
    now = utcnow()
    ctx = JobContext(db=bot.db, notify=bot.dispatcher.notify, now=lambda: now)
    assert await push_lesson(ctx, DueLesson(user_id, now.date(), now), now) == "queued"
    ctx.notify()


async def test_a_lesson_at_the_learners_hour_goes_out_through_trigger_intent(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        await onboard(rasa, "u1")
        await push_the_lesson_now(bot)
        for _ in range(100):
            if rasa.delivered.get("u1"):
                break
            await asyncio.sleep(0.05)
        [call] = rasa.triggered
        assert call["params"] == {"output_channel": "latest", "token": "rasa-token-0123456789"}
        assert call["body"]["name"] == "EXTERNAL_lessonbot_message"
        [lesson] = rasa.delivered["u1"]
        assert lesson["text"].startswith("📘 Lesson 1 of 5")
        assert [b["title"] for b in lesson["buttons"]] == ["Next ▸", "Later"]
        following = await rasa.press("u1", lesson["buttons"][0], action=ANSWER)  # offered, so honoured
        assert following.texts[0].endswith("(2/3)")
        async with bot.db.sessions() as session:
            sent = await session.scalar(
                select(OutboxMessage).where(OutboxMessage.platform_message_id.like("rasa-%"))
            )
        assert sent.status == OutboxStatus.SENT


async def test_a_lesson_rasa_said_but_answered_for_too_late_is_not_said_again_when_tried_again(settings):
    """Rasa took the trigger_intent and said the lesson, but answered after the channel's timeout: the dispatcher
    tries the send again, and the learner gets the lesson once, not twice."""
    async with rasa_assistant(settings, outbox_backoff_seconds=0.1) as (rasa, bot):
        await onboard(rasa, "u1")
        bot.channels["rasa"].timeout = 0.3
        rasa.answer_delay = 1.0  # (said at once; answered after the timeout)
        await push_the_lesson_now(bot)
        for _ in range(200):
            if len(rasa.triggered) >= 2:
                break
            await asyncio.sleep(0.05)
        rasa.answer_delay = 0.0
        async with bot.db.sessions() as session:
            for _ in range(200):
                sent = await session.scalar(
                    select(OutboxMessage).where(OutboxMessage.platform_message_id.like("rasa-%"))
                )
                if sent is not None:
                    break
                await asyncio.sleep(0.05)
        assert len(rasa.triggered) >= 2  # tried again after the timeout
        assert [message["text"].startswith("📘 Lesson 1 of 5") for message in rasa.delivered["u1"]] == [True]
        lesson = rasa.delivered["u1"][0]
        following = await rasa.press("u1", lesson["buttons"][0], action=ANSWER)  # the conversation goes on
        assert following.texts[0].endswith("(2/3)")


def delivery(reply=None, outbox_id: int = 7) -> Delivery:
    reply = reply or Text("Hello **there**", (Choice("Go", "lesson:next"),))
    return Delivery(outbox_id=outbox_id, chat_id="u 1/é", reply=reply)


async def test_trigger_intent_carries_the_reply_for_the_deliver_action():
    async with RasaServerStandIn(action_endpoint="http://127.0.0.1:9/webhook", domain=example_domain(),
                                 rules={}) as rasa:
        channel = RasaChannel(server_url=rasa.url, seal=SEAL)
        rasa.rules = {}
        with pytest.raises(PermanentSendError, match="RASA_TRIGGER_INTENT"):
            await channel.send(delivery())
        [call] = rasa.triggered
        assert call["sender"] == "u 1/é"  # the sender id travels quoted in the path
        carried = SEAL.opened(call["body"]["entities"]["lessonbot_message"])
        go = {"title": "Go", "payload": button_payload("lesson:next")}
        assert carried == {"text": "Hello there", "buttons": [go], "lessonbot_reply": 7}  # (the same at every try)
        await channel.close()


async def test_a_message_typed_as_the_deliver_intent_is_not_said_as_lessonbots(settings):
    """Rasa reads a typed `/EXTERNAL_lessonbot_message{…}` without its model, as it reads our buttons: a person could
    have the assistant say their words (a phishing link) as Lessonbot's. Only a reply Lessonbot sealed is said."""
    async with rasa_assistant(settings) as (rasa, bot):
        forged = {"text": "Your access expires today. Confirm your password: https://evil.example/login"}
        other_key = MessageSeal("another-secret-key-0123456789").seal(forged)
        for carried in (json.dumps(forged), other_key, "0" * 32 + "." + json.dumps(forged)):
            typed = "/EXTERNAL_lessonbot_message" + json.dumps({"lessonbot_message": carried})
            run = await rasa.press("u1", {"title": "", "payload": typed}, action="action_lessonbot_deliver")
            assert run.responses == [], carried
        sealed = "/EXTERNAL_lessonbot_message" + json.dumps({"lessonbot_message": SEAL.seal({"text": "Ours"})})
        ours = await rasa.press("u1", {"title": "", "payload": sealed}, action="action_lessonbot_deliver")
        assert ours.texts == ["Ours"]  # (this bot's own key: what its dispatcher sends is said)


async def test_a_document_sent_on_lessonbots_own_carries_its_signed_link(tmp_path):
    links = FileLinks("test-secret-key-0123456789", "https://actions.example.com/")
    certificate = Document("certificate.pdf", caption="Your certificate", path=str(tmp_path / "c.pdf"))
    async with RasaServerStandIn(action_endpoint="http://127.0.0.1:9/webhook", domain=example_domain(),
                                 rules={}) as rasa:
        channel = RasaChannel(server_url=rasa.url, seal=SEAL, files=links)
        with pytest.raises(PermanentSendError):  # no rule for the intent here: only what was sent matters
            await channel.send(delivery(certificate, outbox_id=41))
        await channel.close()
    carried = SEAL.opened(rasa.triggered[0]["body"]["entities"]["lessonbot_message"])
    assert carried == {"text": "Your certificate", "attachment": links.url("u 1/é", 41), "lessonbot_reply": 41}
    assert carried["attachment"].startswith("https://actions.example.com/files/u%201%2F%C3%A9/41/")
    assert links.matches("u 1/é", 41, carried["attachment"].rsplit("/", 1)[1])
    assert not links.matches("u 1/é", 42, carried["attachment"].rsplit("/", 1)[1])


@pytest.mark.parametrize(("status", "error"), [(500, TransientSendError), (503, TransientSendError),
                                                (401, PermanentSendError), (400, PermanentSendError),
                                                (429, RateLimited)])
async def test_what_the_rasa_server_answers_tells_the_dispatcher_what_to_do(status, error):
    async with RasaServerStandIn(action_endpoint="http://127.0.0.1:9/webhook", domain=example_domain()) as rasa:
        channel = RasaChannel(server_url=rasa.url, seal=SEAL)
        rasa.failures = [status]
        with pytest.raises(error):
            await channel.send(delivery())
        await channel.close()


async def test_a_rasa_server_that_does_not_answer_in_time_is_tried_again_later():
    async with RasaServerStandIn(action_endpoint="http://127.0.0.1:9/webhook", domain=example_domain()) as rasa:
        channel = RasaChannel(server_url=rasa.url, seal=SEAL, timeout=0.2)
        rasa.delay = 1.0
        with pytest.raises(TransientSendError, match="in time"):
            await channel.send(delivery())
        await channel.close()
    unreachable = RasaChannel(server_url=f"http://127.0.0.1:{free_port()}", seal=SEAL)
    with pytest.raises(TransientSendError, match="reached"):
        await unreachable.send(delivery())
    await unreachable.close()


async def test_a_document_goes_as_a_signed_link_to_that_user_only(settings):
    async with rasa_assistant(settings, files=True) as (rasa, bot):
        await onboard(rasa, "u1")
        await onboard(rasa, "u2")
        run = await rasa.say("u1", "/export", action=ANSWER)
        [document] = [response for response in run.responses if response.get("attachment")]
        link = document["attachment"]
        assert link.startswith(rasa.action_endpoint.removesuffix("/webhook") + "/files/u1/")
        async with httpx.AsyncClient() as client:
            exported = await client.get(link)
            assert exported.status_code == 200 and exported.headers["cache-control"] == "private, no-store"
            assert "rasa:u1" in exported.text and "rasa:u2" not in exported.text
            forged = await client.get(link[:-4] + "0000")
            elsewhere = await client.get(link.replace("/files/u1/", "/files/u2/"))
        assert forged.status_code == elsewhere.status_code == 404


def test_sends_to_the_rasa_server_keep_to_rasa_sends_per_second():
    assert RasaChannel(server_url="http://rasa:5005", seal=SEAL, sends_per_second=20).rate_limits("u1") == (
        RateLimit("rasa", 20, 1.0, shared=True),)
    assert RasaChannel(server_url="http://rasa:5005", seal=SEAL, sends_per_second=0.5).rate_limits("u1") == (
        RateLimit("rasa", 1, 2.0, shared=True),)


def test_buttons_are_payloads_rasa_reads_without_a_model():
    message = bot_message(Text("Pick", (Choice('Say "hi"', 'quiz:1:"x"'), Choice("Café", "/help"))))
    assert message == {"text": "Pick", "buttons": [
        {"title": 'Say "hi"', "payload": '/lessonbot_choice{"lessonbot_choice": "quiz:1:\\"x\\""}'},
        {"title": "Café", "payload": '/lessonbot_choice{"lessonbot_choice": "/help"}'},
    ]}
    assert bot_message(Document("c.pdf", caption="Your certificate", url="https://x.test/c.pdf")) == {
        "text": "Your certificate", "attachment": "https://x.test/c.pdf"}


async def test_what_a_person_typed_reaches_rasa_as_text_no_connector_makes_a_link_mention_or_quote_of(settings):
    typed = "<!here> <https://e.test|Pay> [x](https://e.test)\n> *locked*"  # (the echo keeps 60 characters)
    async with rasa_assistant(settings) as (rasa, bot):
        run = await rasa.say("u1", "hi", action=ANSWER, intent="greet")
        run = await rasa.press("u1", button(run, "Yes, let's start"), action=ANSWER)
        run = await rasa.say("u1", "Ann", action=ANSWER)
        run = await rasa.say("u1", typed, action=ANSWER)  # at the time-zone step, which echoes it
    [echo] = [text for text in run.texts if "e.test" in text]
    assert "“‹!here› ‹https://e.test|Pay› ［x］(https://e.test)\n＞ ∗locked∗”" in echo, echo
    assert not set("<>[]*") & set(echo)


def test_our_own_markdown_reaches_rasa_as_plain_text_and_outside_text_in_it_as_look_alikes():
    own = Text(f"**Hi {literal('<@U1> [x](https://evil.test)')}!**\n- see [the guide](https://x.test/?a=1&b=2)")
    assert bot_message(own) == {
        "text": "Hi ‹@U1› ［x］(https://evil.test)!\n• see the guide (https://x.test/?a=1&b=2)"}
    caption = Document("c.pdf", caption=f"For *{literal('<!here> _Ann_')}*", url="https://x.test/c.pdf")
    assert bot_message(caption) == {"text": "For ‹!here› ˍAnnˍ", "attachment": "https://x.test/c.pdf"}


# The HTTP side, as rasa-sdk's own server answers it -------------------------------------------------------------------


async def test_the_action_server_answers_as_rasa_sdks_own_server(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        base = rasa.action_endpoint.removesuffix("/webhook")
        state = rasa.conversation("u1").state()
        call = {"next_action": NEXT, "sender_id": "u1", "tracker": state, "version": rasa_sdk_version,
                "domain": example_domain()}
        async with httpx.AsyncClient(base_url=base, params={"token": ACTIONS_TOKEN}) as client:
            assert (await client.get("/health")).json() == {"status": "ok"}
            listed = {item["name"] for item in (await client.get("/actions")).json()}
            assert listed == {NEXT, ANSWER, "action_lessonbot_ask", "action_lessonbot_progress",
                              "action_lessonbot_enroll", "action_lessonbot_settings", "action_lessonbot_deliver"}
            unknown = await client.post("/webhook", json={**call, "next_action": "action_nobody"})
            assert unknown.status_code == 404 and unknown.json()["action_name"] == "action_nobody"
            no_domain = {key: value for key, value in call.items() if key != "domain"}
            missing = await client.post("/webhook", json={**no_domain, "domain_digest": "never-seen"})
            assert missing.status_code == 449
            broken = await client.post("/webhook", content=b"{not json")
            assert broken.status_code == 400
            deflated = await client.post("/webhook", content=zlib.compress(json.dumps(call).encode()),
                                         headers={"Content-Encoding": "deflate"})
            assert deflated.status_code == 200
            assert deflated.json()["responses"][0]["text"].startswith("First, let's set you up")
            # a small deflated body that inflates past the limit (a few hundred kilobytes to hundreds of megabytes)
            bomb = zlib.compress(b'{"x": "' + b" " * 64_000_000 + b'"}', 9)
            assert len(bomb) < 1_000_000
            inflating = await client.post("/webhook", content=bomb, headers={"Content-Encoding": "deflate"})
            assert inflating.status_code == 413 and "once inflated" in inflating.json()["error"]
        async with httpx.AsyncClient(base_url=base) as client:
            refused = await client.post("/webhook", json=call)
            wrong = await client.post("/webhook", json=call, params={"token": "guess"})
            bearer = await client.post("/webhook", json={**call, "next_action": "action_lessonbot_progress"},
                                       headers={"Authorization": f"Bearer {ACTIONS_TOKEN}"})
        assert refused.status_code == wrong.status_code == 401
        assert bearer.status_code == 200
        async with bot.db.sessions() as session:
            taken = list(await session.scalars(select(OutboxMessage.platform_message_id)))
        assert taken and all(found.startswith(IN_RESPONSE) for found in taken)


def test_a_bad_rasa_setting_stops_the_command_with_one_message(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RASA_URL", "rasa:5005")
    assert main(["rasa-actions"]) == 2
    err = capsys.readouterr().err
    assert "RASA_URL" in err and "http://rasa:5005" in err and "Traceback" not in err


def test_a_setting_found_unusable_inside_a_command_is_one_message_too(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text("")
    monkeypatch.setenv("LEADER_CHECK_SECONDS", "0.01")
    assert main(["rasa-actions", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "secret_key is empty" in err and "Traceback" not in err


# The example assistant stays true to the actions ------------------------------------------------------------------


def test_the_example_domain_declares_what_the_actions_use():
    domain = example_domain()
    served = {action.action for action in ACTIONS} | {"action_lessonbot_deliver"}
    assert set(domain["actions"]) == served
    set_after_each_call = {*learner_slots(None), "lessonbot_error"}
    assert set_after_each_call | {"lessonbot_choice"} <= set(domain["slots"])
    assert {"lessonbot_choice", "EXTERNAL_lessonbot_message"} <= set(domain["intents"])
    assert {"lessonbot_choice", "lessonbot_message", "lessonbot_course"} <= set(domain["entities"])
    for name in ("rules", "stories"):
        steps = [step for entry in yaml.safe_load((EXAMPLE / "data" / f"{name}.yml").read_text())[name]
                 for step in entry["steps"]]
        assert {step["action"] for step in steps if "action" in step} <= served
        assert {step["intent"] for step in steps if "intent" in step} <= {*domain["intents"], "nlu_fallback"}
    for endpoints in ("endpoints.yml", "endpoints.compose.yml"):
        endpoint = yaml.safe_load((EXAMPLE / endpoints).read_text())["action_endpoint"]
        assert endpoint["url"].endswith(":5055/webhook") and endpoint["token"] == "${RASA_ACTIONS_TOKEN}"


async def test_two_action_servers_on_one_database_answer_one_conversation_in_turn(settings):
    """Rasa balancing its calls over two action servers: each call is answered by whichever it reached, the
    learner's way goes on in order, and a server that has not seen the domain yet asks for it (449)."""
    async with rasa_assistant(settings) as (rasa, bot):
        bound = listening()
        port = port_of(bound)
        async with serving(create_action_app(bot.settings), bound):
            servers = [rasa.action_endpoint, f"http://127.0.0.1:{port}/webhook"]
            steps = [("hi", None), (None, "Yes, let's start"), ("Ann", None), ("Lisbon", None),
                     (None, "Yes, that's right"), ("08:00", None), (None, "Every day"),
                     (None, "Spot the phish, five minutes a day"), (None, "1 lesson (about 5 minutes)"),
                     (None, "Start my first lesson"), (None, "Next ▸")]
            run = None
            for number, (text, pressed) in enumerate(steps):
                rasa.action_endpoint = servers[number % 2]
                if pressed is None:
                    run = await rasa.say("u1", text, action=ANSWER)
                else:
                    run = await rasa.press("u1", button(run, pressed), action=ANSWER)
                assert run.status == 200 and slots(run)["lessonbot_error"] is None
            assert run.texts[0].endswith("(2/3)")


async def test_lessonbot_rasa_actions_serves_a_rasa_server_as_a_process_of_its_own(database_url, tmp_path):
    """The command itself, in a child process on the test database: the Rasa server's calls reach it, its token is
    asked for, and a learner's first words get the welcome."""
    from bench.processes import LESSONBOT, start_process
    from tests.support import server_env

    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = server_env(database_url, data_dir, RASA_ACTIONS_TOKEN=ACTIONS_TOKEN, WEB_CHAT_ENABLED="false")
    server = start_process("lessonbot rasa-actions", [*LESSONBOT, "rasa-actions"], data_dir, env)
    try:
        server.wait_ready_blocking("/health", timeout=60)
        async with RasaServerStandIn(action_endpoint=f"{server.url}/webhook", domain=example_domain(),
                                     action_token=ACTIONS_TOKEN) as rasa:
            run = await rasa.say("u1", "hi", action=ANSWER, intent="greet")
            assert run.status == 200 and run.texts[0].startswith("Hi! I'm Lessonbot"), server.log_tail()
            rasa.action_token = ""
            assert (await rasa.say("u1", "yes", action=ANSWER)).status == 401
    finally:
        server.stop()


@pytest.mark.parametrize("dispatch", [False, True])
async def test_an_action_server_without_the_dispatcher_leaves_the_election_to_the_dispatch_process(settings,
                                                                                                  dispatch):
    """Beside a `lessonbot dispatch` with every channel (docker-compose.yml), an action server with none of the
    platforms' secrets, elected, would leave their replies waiting for as long as it leads."""
    from scheduler.leader import Leadership
    from storage.db import Database

    app = create_action_app(settings, dispatch=dispatch)
    db = Database(settings.resolved_database_url)
    elected = asyncio.Event()

    async def send() -> None:
        elected.set()
        await asyncio.Event().wait()

    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.3)  # (its start-up: an election, if it takes part in one, is held at once)
        dispatcher = asyncio.create_task(Leadership(db, "dispatcher", owner="dispatch", check_seconds=0.1).hold(send))
        try:
            await asyncio.wait_for(elected.wait(), timeout=2)
        except TimeoutError:
            pass
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            await db.dispose()
    assert elected.is_set() is not dispatch  # (with the dispatcher, it leads: the only Lessonbot process there is)
