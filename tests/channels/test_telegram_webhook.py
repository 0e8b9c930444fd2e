"""POST /webhooks/telegram through the real app, the real pipeline and python-telegram-bot against a local Bot API."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial

import httpx
import pytest
from sqlalchemy import func, select

from bot.config import ConfigError, load_settings
from channels.telegram import SECRET_HEADER, TelegramChannel
from standins.telegram import TOKEN, Fault, button_update, person, text_update
from storage.courses import Course
from storage.models import ChannelIdentity, InboundMessage, User, utcnow
from storage.payments import holds_for_good, make_code
from tests.channels.test_telegram_updates import EXPECTED
from tests.channels.test_unreachable import ONBOARDING
from tests.dialogs.learning_support import PAID, import_sample
from tests.support import (
    running,
    standin,  # noqa: F401 (the fixture)
)

SECRET = "test-webhook-secret_0123456789"
CHAT = 1111111


@pytest.fixture
def telegram_settings(settings, standin):
    return settings.model_copy(update={
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_base_url": standin.base_url,
        "web_chat_enabled": False,
    })




async def post(client: httpx.AsyncClient, update: dict | bytes, *, secret: str | None = SECRET) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    return await client.post("/webhooks/telegram", content=body, headers=headers)


async def stored(lessonbot) -> int:
    async with lessonbot.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(InboundMessage))


# every recorded payload -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_fixture_payloads_through_the_webhook(name, telegram_settings, standin, fixtures_dir, caplog):
    caplog.set_level(logging.INFO, logger="channels.telegram")
    body = (fixtures_dir / "telegram/core-telegram-org-webhooks" / name).read_bytes()
    kind, expected, _media = EXPECTED[name]
    async with running(telegram_settings) as (client, lessonbot):
        response = await post(client, body)
        assert response.status_code == 200, response.text
        if kind == "ignored":
            assert await stored(lessonbot) == 0
            reasons = [r.getMessage() for r in caplog.records if getattr(r, "update_id", None) == 10000]
            assert any(expected in reason for reason in reasons), reasons
            # The inline-mode button press is still answered, so its spinner stops.
            if "callback_query" in json.loads(body):
                assert response.json() == {"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"}
            return
        assert await stored(lessonbot) == 1
        async with lessonbot.db.sessions() as session:
            row = await session.scalar(select(InboundMessage))
        assert (row.platform_id, row.sender_id, row.payload["text"]) == ("10000", str(CHAT), expected)
        # The pipeline processed it and answered through the stand-in.
        await standin.wait_for(lambda: standin.texts(CHAT))


# verification and malformed requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("", 401), ("wrong-secret", 403), (SECRET[:-1], 403)])
async def test_missing_or_wrong_secret_is_refused_and_nothing_stored(secret, status, telegram_settings, standin):
    async with running(telegram_settings) as (client, lessonbot):
        response = await post(client, text_update("/start"), secret=secret)
        assert response.status_code == status
        assert SECRET_HEADER in response.json()["error"]
        assert "TELEGRAM_WEBHOOK_SECRET" not in response.text  # nothing of our configuration to the caller
        assert await stored(lessonbot) == 0
    assert standin.calls == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"update_id": 1, "message": ', 400),
        (b"\xff\xfe not utf-8", 400),
        (b"[1, 2]", 400),
        (b'{"message": {"text": "no update id"}}', 400),
        (b'{"update_id": "7"}', 400),
        (b'{"update_id": 8, "x": ' + b"[" * 20000 + b"]" * 20000 + b"}", 400),  # 40 KB, 20,000 levels deep
    ],
)
async def test_malformed_bodies_are_refused(body, status, telegram_settings):
    async with running(telegram_settings) as (client, lessonbot):
        response = await post(client, body)
        assert response.status_code == status, response.text
        assert await stored(lessonbot) == 0


async def test_oversized_headers_are_refused_without_storing(telegram_settings):
    async with running(telegram_settings) as (client, lessonbot):
        response = await client.post(
            "/webhooks/telegram", json=text_update("hi"), headers={SECRET_HEADER: SECRET, "x-padding": "p" * 20_000}
        )
        assert response.status_code == 431 and "the limit is 16,384" in response.json()["error"]
        assert await stored(lessonbot) == 0


async def test_oversized_body_is_refused_without_storing(telegram_settings):
    update = text_update("x" * (telegram_settings.max_body_bytes + 1))
    async with running(telegram_settings) as (client, lessonbot):
        response = await post(client, update)
        assert response.status_code == 413
        assert await stored(lessonbot) == 0


async def test_an_update_ptb_cannot_read_is_acknowledged_and_ignored(telegram_settings, caplog):
    caplog.set_level(logging.INFO, logger="channels.telegram")
    unreadable = {"update_id": 31, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}}}  # no date
    async with running(telegram_settings) as (client, lessonbot):
        response = await post(client, unreadable)
        assert response.status_code == 200  # refusing it would only make Telegram send it again and again
        assert await stored(lessonbot) == 0
    assert any("not readable" in r.getMessage() for r in caplog.records)


def _private(**message: object) -> dict:
    return {"message_id": 1, "date": 1, "chat": {"id": 7, "type": "private"},
            "from": {"id": 7, "is_bot": False, "first_name": "A"}, **message}


@pytest.mark.parametrize("update", [
    {"update_id": 41, "message": _private(text=5)},
    {"update_id": 42, "message": _private(text="hi", **{"from": {"id": 7, "is_bot": False, "first_name": 5}})},
    {"update_id": 43, "message": _private(caption=["x"], photo=[{"file_id": "f", "width": 1, "height": 1}])},
    {"update_id": 44, "callback_query": {"id": "q", "from": {"id": 7, "is_bot": False, "first_name": "A"}, "data": 7,
                                         "chat_instance": "c", "message": _private(text="pick")}},
], ids=["text", "first_name", "caption", "button_data"])
async def test_an_update_with_a_number_or_a_list_where_text_belongs_is_acknowledged_and_ignored(
        update, telegram_settings, caplog):
    caplog.set_level(logging.INFO, logger="channels.telegram")
    async with running(telegram_settings) as (client, lessonbot):
        response = await post(client, update)
        assert response.status_code == 200  # a 500 would bring it back again and again
        assert await stored(lessonbot) == 0
    assert any("not a string" in r.getMessage() or "not readable" in r.getMessage() for r in caplog.records)


async def test_without_a_secret_the_channel_is_off(telegram_settings, caplog):
    caplog.set_level(logging.INFO, logger="bot.app")
    unsigned = telegram_settings.model_copy(update={"telegram_webhook_secret": ""})
    async with running(unsigned) as (client, lessonbot):
        assert "telegram" not in lessonbot.channels
        assert (await post(client, text_update("/start"), secret="anything")).status_code == 404
    assert any("telegram is off: TELEGRAM_WEBHOOK_SECRET is empty" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
        TelegramChannel(token=TOKEN).routes(lessonbot)


def test_a_secret_telegram_would_refuse_stops_start_up():
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET.*letters, digits"):
        load_settings(_env_file=None, telegram_webhook_secret="not allowed: spaces & colons")


# conversations --------------------------------------------------------------------------------------------------------


async def test_duplicate_update_gets_one_reply(telegram_settings, standin):
    update = text_update("/help")
    async with running(telegram_settings) as (client, lessonbot):
        first, second = await post(client, update), await post(client, update)
        assert first.status_code == second.status_code == 200
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        assert len(standin.texts(CHAT)) == 1
        assert await stored(lessonbot) == 1


async def test_start_press_a_button_then_ask_for_help(telegram_settings, standin):
    async with running(telegram_settings) as (client, lessonbot):
        assert (await post(client, text_update("/start", user=person(CHAT, "Ann")))).status_code == 200
        await standin.wait_for(lambda: standin.texts(CHAT))
        greeting = standin.called("sendMessage")[0]
        assert greeting.params["text"].startswith("Hi Ann")
        assert greeting.params["parse_mode"] == "HTML"
        [first_button], *_others = greeting.reply_markup["inline_keyboard"]

        press = button_update(greeting, first_button["callback_data"], user=person(CHAT, "Ann"))
        response = await post(client, press)
        assert response.status_code == 200
        # The button is answered in the acknowledgement itself (Telegram runs the method it carries).
        assert response.json() == {
            "method": "answerCallbackQuery", "callback_query_id": press["callback_query"]["id"]
        }
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 2)
        async with lessonbot.db.sessions() as session:
            pressed = await session.scalar(
                select(InboundMessage).where(InboundMessage.platform_id == str(press["update_id"]))
            )
        assert pressed.payload["choice"] == first_button["callback_data"]
        assert pressed.payload["text"] == first_button["text"]

        await post(client, text_update("/help", user=person(CHAT, "Ann")))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) == 3)
        assert standin.texts(CHAT)[2].startswith("Here is what you can send me")


async def test_names_are_escaped_for_telegram_html(telegram_settings, standin):
    async with running(telegram_settings) as (client, lessonbot):
        await post(client, text_update("/start", user=person(CHAT, "<b>Ann & co</b>")))
        await standin.wait_for(lambda: standin.texts(CHAT))
    greeting = standin.texts(CHAT)[0]
    assert "Hi &lt;b&gt;Ann &amp; co&lt;/b&gt;" in greeting and "<b>" not in greeting


async def test_group_conversation_answers_commands_only(telegram_settings, standin):
    group = -1001234567890
    async with running(telegram_settings) as (client, lessonbot):
        for text in ("morning all", "/help@someotherbot", "/help"):
            assert (await post(client, text_update(text, chat_id=group, user=person(42, "Bo")))).status_code == 200
        await standin.wait_for(lambda: standin.texts(group))
        await lessonbot.settle()
        assert len(standin.texts(group)) == 1
        assert await stored(lessonbot) == 1
    assert standin.called("getMe")  # the bot learned its username to tell which messages are meant for it


async def test_in_a_group_with_topics_the_answer_goes_to_the_topic_it_was_asked_in(telegram_settings, standin):
    """A forum supergroup: Bo asks in the topic "Homework"; the answer goes there (message_thread_id), not to the
    group's General topic, and so does the answer to a button he presses under it."""
    group, topic = -1001234567890, 7
    forum = {"id": group, "type": "supergroup", "title": "Study group", "is_forum": True}
    bo = person(42, "Bo")
    async with running(telegram_settings) as (client, lessonbot):
        asked = text_update("/start", chat_id=group, user=bo, chat=forum, message_thread_id=topic,
                            is_topic_message=True)
        assert (await post(client, asked)).status_code == 200
        await standin.wait_for(lambda: standin.texts(group))
        greeting = standin.called("sendMessage")[0]
        assert str(greeting.params.get("message_thread_id")) == str(topic)
        *_others, [commands] = greeting.reply_markup["inline_keyboard"]
        press = button_update(greeting, commands["callback_data"], user=bo)
        press["callback_query"]["message"].update(chat=forum, message_thread_id=topic, is_topic_message=True)
        assert (await post(client, press)).status_code == 200
        await standin.wait_for(lambda: len(standin.texts(group)) == 2)
    assert str(standin.called("sendMessage")[1].params.get("message_thread_id")) == str(topic)


async def test_a_button_of_a_message_too_old_to_be_shown_is_answered_as_a_spent_one(telegram_settings, standin):
    """Ann presses a button under a message Telegram no longer shows the bot (older than 48 hours: the press comes
    with the message's chat and id only, date 0, no keyboard), one whose value travelled as a reference to the
    button: its label cannot be read back, and she is told the button is no longer available, not left without an
    answer."""
    async with running(telegram_settings) as (client, lessonbot):
        await post(client, text_update("/start"))
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        greeting = standin.called("sendMessage")[0]
        press = button_update(greeting, "#button:0")
        press["callback_query"]["message"] = {"message_id": 17, "date": 0, "chat": {"id": CHAT, "type": "private"}}
        response = await post(client, press)
        assert response.json()["method"] == "answerCallbackQuery"
        await standin.wait_for(lambda: len(standin.texts(CHAT)) > 1)
    assert standin.texts(CHAT)[1:] == ["That button isn't available."]


async def test_a_button_tapped_twice_is_answered_once_and_the_second_tap_says_nothing(telegram_settings, standin):
    """Ann taps "Yes, let's start" twice in a row (two callback queries for one button of one message, the second
    arriving as the first is processed): the first tap is answered; the second stops its spinner and says nothing in
    the chat, no "that button is from an earlier message". The same button tapped again long after, or after she wrote
    something, is a spent button, answered as one."""
    ann = person(CHAT, "Ann")
    async with running(telegram_settings) as (client, lessonbot):
        await post(client, text_update("/start", user=ann))
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        greeting = standin.called("sendMessage")[0]
        [[yes], *_others] = greeting.reply_markup["inline_keyboard"]
        taps = [button_update(greeting, yes["callback_data"], user=ann) for _ in range(2)]
        for tap in taps:
            response = await post(client, tap)
            assert response.json() == {"method": "answerCallbackQuery",
                                       "callback_query_id": tap["callback_query"]["id"]}
        await lessonbot.settle()
        assert standin.texts(CHAT)[1:] == ["What should I call you?"]

        async with lessonbot.db.transaction() as session:  # the taps were a minute ago
            for row in await session.scalars(select(InboundMessage)):
                row.received_at -= timedelta(minutes=1)
        await post(client, button_update(greeting, yes["callback_data"], user=ann))
        await lessonbot.settle()
        assert standin.texts(CHAT)[2].startswith("That button is from an earlier message")
        await post(client, text_update("Ann", user=ann))
        await lessonbot.settle()
        answered = len(standin.texts(CHAT))
        await post(client, button_update(greeting, yes["callback_data"], user=ann))
        await lessonbot.settle()
        assert standin.texts(CHAT)[answered].startswith("That button is from an earlier message")


async def test_a_button_pressed_first_is_answered_in_the_language_of_the_pressers_app(telegram_settings, standin):
    """In a group, Cy, whose Telegram speaks Spanish, has never written to the bot; the first thing of hers it gets is
    a press of a button it offered Bo: she is answered in Spanish, as a first message of hers would be."""
    group = -1001234567890
    async with running(telegram_settings) as (client, lessonbot):
        await post(client, text_update("/start", chat_id=group, user=person(42, "Bo", language_code="en")))
        await standin.wait_for(lambda: standin.texts(group))
        greeting = standin.called("sendMessage")[0]
        [[yes], *_others] = greeting.reply_markup["inline_keyboard"]
        press = button_update(greeting, yes["callback_data"], user=person(43, "Cy", language_code="es"))
        assert (await post(client, press)).status_code == 200
        await standin.wait_for(lambda: len(standin.texts(group)) == 2)
    assert standin.texts(group)[1] == "Ese botón no está disponible."


@pytest.mark.parametrize("captioned", [None, 0, 2], ids=["no-caption", "first-captioned", "last-captioned"])
async def test_an_album_of_photos_is_one_message_answered_once(captioned, telegram_settings, standin):
    """Ann sends three photos at once (an album: three messages sharing a media_group_id), with or without a caption
    on one of them (Telegram's apps put it on the first): the bot takes them as one message and answers once, not
    once a photo, nor once for the captioned photo and once for the rest; the album's words are its first item's
    caption."""
    photo = [{"file_id": "P1", "file_unique_id": "u1", "width": 90, "height": 90}]

    def album_item(**more) -> dict:
        update = text_update("", media_group_id="13579", photo=photo, **more)
        del update["message"]["text"]
        return update

    async with running(telegram_settings) as (client, lessonbot):
        await post(client, text_update("/start"))
        await standin.wait_for(lambda: standin.texts(CHAT))
        await lessonbot.settle()
        items = [album_item(**({"caption": "/help"} if index == captioned else {})) for index in range(3)]
        for item in items:
            assert (await post(client, item)).status_code == 200
        assert (await post(client, items[1])).status_code == 200  # a redelivery
        await lessonbot.settle()
        assert await stored(lessonbot) == 2  # /start, the album
        async with lessonbot.db.sessions() as session:
            album = await session.scalar(select(InboundMessage).order_by(InboundMessage.id.desc()).limit(1))
        assert album.payload["text"] == ("/help" if captioned == 0 else "")
    answers = standin.texts(CHAT)[1:]
    if captioned == 0:
        assert sum(text.startswith("Here is what you can send me") for text in answers) == 1, answers
        assert not any("I can only read words here" in text for text in answers), answers
    else:
        assert sum("I can only read words here" in text for text in answers) == 1, answers


async def test_a_sticker_a_voice_note_or_a_location_is_told_the_bot_reads_words(telegram_settings, standin):
    """Ann, set up and between lessons, sends a sticker, then a voice note, her location, a rolled die, a poll, a story
    and paid media: nothing there is words to read, and each time she is told so and what to do, neither asked "What
    would you like to know?" as if she had sent an empty question nor left without an answer."""
    ann = person(CHAT, "Ann")
    async with running(telegram_settings) as (client, lessonbot):
        await import_sample(lessonbot)
        for text in ONBOARDING:
            await post(client, text_update(text, user=ann))
            await lessonbot.settle()
        for kind, fields in [
            ("sticker", {"file_id": "S1", "file_unique_id": "s1", "type": "regular", "width": 512, "height": 512,
                         "is_animated": False, "is_video": False, "emoji": "👍"}),
            ("voice", {"file_id": "V1", "file_unique_id": "v1", "duration": 3}),
            ("location", {"latitude": 38.72, "longitude": -9.14}),
            ("dice", {"emoji": "🎲", "value": 4}),
            ("poll", {"id": "P1", "question": "Tea or coffee?", "total_voter_count": 0, "is_closed": False,
                      "options": [{"persistent_id": "a", "text": "Tea", "voter_count": 0},
                                  {"persistent_id": "b", "text": "Coffee", "voter_count": 0}],
                      "is_anonymous": True, "type": "regular", "allows_multiple_answers": False,
                      "allows_revoting": False, "members_only": False}),
            ("story", {"chat": {"id": -1001999, "type": "channel", "title": "News"}, "id": 7}),
            ("paid_media", {"star_count": 5, "paid_media": [{"type": "preview", "width": 90, "height": 90}]}),
        ]:
            sent = len(standin.texts(CHAT))
            update = text_update("", user=ann, **{kind: fields})
            del update["message"]["text"]
            assert (await post(client, update)).status_code == 200
            await lessonbot.settle()
            assert standin.texts(CHAT)[sent:] == [
                "I can only read words here: please type your question."
            ], kind


async def test_group_update_waits_for_telegram_when_the_bot_cannot_learn_its_name(telegram_settings, standin):
    update = text_update("/help", chat_id=-100555)
    standin.fail("getMe", Fault.server_error())
    async with running(telegram_settings) as (client, lessonbot):
        refused = await post(client, update)
        assert refused.status_code == 503  # Telegram delivers it again later
        assert await stored(lessonbot) == 0
        assert (await post(client, update)).status_code == 200
        await standin.wait_for(lambda: standin.texts(-100555))


async def test_the_bot_connection_is_closed_with_the_app_and_reopened_on_use(telegram_settings, standin):
    async with running(telegram_settings) as (client, lessonbot):
        channel = lessonbot.channels["telegram"]
        await post(client, text_update("/help"))
        await standin.wait_for(lambda: standin.texts(CHAT))
        assert len(standin.called("getMe")) == 1
    # The app's shutdown closed the Bot (its HTTP connections); using it again initializes it anew.
    await channel.ready()
    assert len(standin.called("getMe")) == 2
    await channel.close()


# data no database column holds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_name", "stored_as"),
    [("An\x00n", "Ann"), ("A" * 300, "A" * 200), ("Ann\ud800", "Ann")],
    ids=["nul", "over-200-characters", "lone-surrogate"],
)
async def test_a_name_no_column_holds_is_cleaned_and_the_learner_answered_every_turn(
    first_name, stored_as, telegram_settings, standin, caplog
):
    caplog.set_level(logging.WARNING, logger="bot.pipeline")
    who = person(CHAT, first_name)
    async with running(telegram_settings) as (client, lessonbot):
        assert (await post(client, text_update("/start", user=who))).status_code == 200
        await standin.wait_for(lambda: len(standin.texts(CHAT)) >= 1)
        assert (await post(client, text_update("/help\x00", user=who))).status_code == 200
        answered = len(standin.texts(CHAT))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) > answered)
        async with lessonbot.db.sessions() as session:
            assert await session.scalar(select(User.display_name)) == stored_as
            statuses = set(await session.scalars(select(InboundMessage.status)))
        assert statuses == {"done"}
    cleaned = [record for record in caplog.records if "cleaned for storage" in record.getMessage()]
    assert cleaned and all(first_name not in record.getMessage() for record in cleaned)


# a start link: t.me/<bot>?start=PAYLOAD arrives as "/start PAYLOAD" -------------------------------------------------


def start_link(payload: str, user: dict) -> dict:
    """The update Telegram sends when someone opens t.me/<bot>?start=PAYLOAD and presses Start."""
    return text_update(f"/start {payload}", user=user, entities=[{"type": "bot_command", "offset": 0, "length": 6}])


async def said(client: httpx.AsyncClient, lessonbot, standin, update: dict) -> list[str]:
    """What the bot answered `update` (a message) in its chat, once it has settled."""
    chat = update["message"]["chat"]["id"]
    before = len(standin.texts(chat))
    assert (await post(client, update)).status_code == 200
    await lessonbot.settle()
    return standin.texts(chat)[before:]


async def test_a_start_link_naming_a_course_sets_up_that_course_without_asking_which(telegram_settings, standin):
    """Ann opens the link of the course "Passwords that hold" (t.me/<bot>?start=passwords-that-hold): her set-up does
    not ask which course she wants, and ends with that one; a link whose payload names no course (a referral) is a
    plain /start."""
    ann, bea = person(CHAT, "Ann"), person(CHAT + 1, "Bea")
    async with running(telegram_settings) as (client, lessonbot):
        await import_sample(lessonbot)
        await import_sample(lessonbot, PAID)

        say = partial(said, client, lessonbot, standin)

        [greeting] = await say(start_link("passwords-that-hold", ann))
        assert greeting.startswith("Hi Ann! I'm Lessonbot")
        for text in ("yes", "Ann", "Lisbon", "yes", "08:00"):
            await say(text_update(text, user=ann))
        assert await say(text_update("every day", user=ann)) == ["How much would you like to do each day?"]
        [done] = await say(text_update("1", user=ann))
        assert done.startswith("All set, Ann!") and "Course: Passwords that hold." in done

        [greeting] = await say(start_link("ref_1111111", bea))
        assert greeting.startswith("Hi Bea! I'm Lessonbot")
        for text in ("yes", "Bea", "Lisbon", "yes", "08:00"):
            await say(text_update(text, user=bea))
        assert await say(text_update("every day", user=bea)) == ["Which course would you like to take?"]


async def test_a_start_link_with_an_access_code_opens_its_course_once_the_learner_agrees(telegram_settings, standin):
    """The link an admin shares for a cohort carries an access code (t.me/<bot>?start=LB-7K2Q-9XWM): the code is
    redeemed once the learner agrees to the set-up (not before: declining keeps nothing), and the set-up ends with
    its course, open to them; one who is set up already has it redeemed at once, as /redeem does."""
    ann, bea = person(CHAT, "Ann"), person(CHAT + 1, "Bea")
    async with running(telegram_settings) as (client, lessonbot):
        await import_sample(lessonbot)
        await import_sample(lessonbot, PAID)
        async with lessonbot.db.transaction() as session:
            course = await session.scalar(select(Course).where(Course.slug == "passwords-that-hold"))
            code = (await make_code(session, course.id, uses=5, created_by="test", now=utcnow())).code

        say = partial(said, client, lessonbot, standin)

        async def holds(user: dict) -> bool:
            async with lessonbot.db.sessions() as session:
                identity = await session.scalar(select(ChannelIdentity).where(
                    ChannelIdentity.channel == "telegram", ChannelIdentity.external_id == str(user["id"])))
                return await holds_for_good(session, identity.user_id, course.id)

        await say(start_link(code, ann))
        assert not await holds(ann)  # not before she agrees
        assert await say(text_update("yes", user=ann)) == [
            "🎟️ Code accepted: “Passwords that hold” is open to you.", "What should I call you?"]
        assert await holds(ann)
        for text in ("Ann", "Lisbon", "yes", "08:00"):
            await say(text_update(text, user=ann))
        assert await say(text_update("every day", user=ann)) == ["How much would you like to do each day?"]
        [done] = await say(text_update("1", user=ann))
        assert "Course: Passwords that hold." in done

        for text in ("/start", "yes", "Bea", "Lisbon", "yes", "08:00", "every day", "spot-phishing", "1"):
            await say(text_update(text, user=bea))
        opened = await say(start_link(code, bea))
        assert opened[0] == "🎟️ Code accepted: “Passwords that hold” is open to you."
        assert opened[1].startswith("📘 Lesson 1 of 3")
        assert await holds(bea)
