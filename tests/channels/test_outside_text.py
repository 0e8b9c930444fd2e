"""Outside text is data: a name or an echoed answer that looks like markup is shown as typed on every platform, never
as a link, a mention or formatting. Each platform through the real app, its real SDK and its stand-in: onboarding's
"Hi …!" (in a private chat and in a Telegram group) and the time-zone step's echo of what was typed.
"""

from __future__ import annotations

import html
import json
from itertools import count

import pytest

from bot.messages import Choice, Text
from channels.telegram import SECRET_HEADER
from channels.whatsapp.render import text_bodies
from standins.slack import dm_event, signed
from standins.telegram import TOKEN, TelegramStandIn, person, text_update
from standins.twilio import TwilioStandIn
from tests.dialogs.learning_support import import_sample
from tests.support import running, whatsapp_app

# A platform name: a disguised link, HTML, Markdown and Slack control sequences, an escaped-looking entity, emoji and
# right-to-left text.
HOSTILE_NAME = (
    '[Verify your account](https://evil.example/login) <a href="https://evil.example">x</a> *bold* _it_ `code` '
    "<!channel> <@U123> &lt; 🎉 \u202bשלום\u202c"
)
# What a person types at the time-zone step (the echo keeps its first 60 characters).
HOSTILE_ZONE = "[x](https://evil.example) *bold* `c` <!channel> <@U123> &lt;"
TELEGRAM_SECRET = "test-webhook-secret_0123456789"
_ids = count(1)


def assert_no_markup_from_outside(shown: str) -> None:
    """Nothing of the hostile text became a link, a mention or formatting, whatever the platform's markup."""
    assert "<a " not in shown and "<https://evil" not in shown and "|x>" not in shown
    assert "<!channel>" not in shown and "<@U123>" not in shown
    assert "<b>bold</b>" not in shown and "<i>" not in shown and "<code>" not in shown


# Telegram: HTML through python-telegram-bot ---------------------------------------------------------------------------


@pytest.fixture
async def telegram_api():
    async with TelegramStandIn() as server:
        yield server


async def telegram_says(client, lessonbot, api, text: str, *, chat: int, user: dict) -> list[str]:
    before = len(api.texts(chat))
    response = await client.post("/webhooks/telegram", content=json.dumps(text_update(text, chat_id=chat, user=user)),
                                 headers={"content-type": "application/json", SECRET_HEADER: TELEGRAM_SECRET})
    assert response.status_code == 200
    await lessonbot.settle()
    return api.texts(chat)[before:]


async def test_telegram_shows_a_hostile_name_and_echo_as_typed_in_private_and_in_a_group(settings, telegram_api):
    configured = settings.model_copy(update={
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": TELEGRAM_SECRET,
        "telegram_api_base_url": telegram_api.base_url, "web_chat_enabled": False,
    })
    user = person(4242, HOSTILE_NAME)
    async with running(configured) as (client, lessonbot):
        for chat in (4242, -1009876543210):  # a private chat, then a group
            [greeting, *_] = await telegram_says(client, lessonbot, telegram_api, "/start", chat=chat, user=user)
            assert greeting.startswith(f"Hi {html.escape(HOSTILE_NAME, quote=False)}! I'm Lessonbot."), greeting
            assert_no_markup_from_outside(greeting)
        await telegram_says(client, lessonbot, telegram_api, "yes", chat=4242, user=user)
        await telegram_says(client, lessonbot, telegram_api, "Ann", chat=4242, user=user)
        [echo, *_] = await telegram_says(client, lessonbot, telegram_api, HOSTILE_ZONE, chat=4242, user=user)
    assert f"“{html.escape(HOSTILE_ZONE, quote=False)}”" in echo
    assert_no_markup_from_outside(echo)
    assert all(call.params["parse_mode"] == "HTML" for call in telegram_api.called("sendMessage"))


# Slack: mrkdwn through slack_sdk --------------------------------------------------------------------------------------


async def slack_says(client, lessonbot, api, text: str) -> list[str]:
    before = len(api.texts("D0DM1"))
    body = json.dumps(dm_event(text, event_id=f"EvOUTSIDE{next(_ids)}"))
    response = await client.post("/slack/events", content=body, headers=signed(body, content_type="application/json"))
    assert response.status_code == 200
    await lessonbot.settle()
    return [block["text"]["text"] for call in api.posted("D0DM1")[before:] for block in call.params["blocks"]
            if block["type"] == "section"]


async def test_slack_shows_a_hostile_echo_as_typed_with_no_mention_link_or_formatting(slack_settings, standin):
    # Slack sends what a person typed with its own &, < and > escaped
    typed = HOSTILE_ZONE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    async with running(slack_settings) as (client, lessonbot):
        await slack_says(client, lessonbot, standin, "/start")
        await slack_says(client, lessonbot, standin, "yes")
        await slack_says(client, lessonbot, standin, "Ann")
        [echo, *_] = await slack_says(client, lessonbot, standin, typed)
    assert "“[x](https://evil.example) ∗bold∗ ˋcˋ &lt;!channel&gt; &lt;@U123&gt; &amp;lt;”" in echo, echo
    assert_no_markup_from_outside(echo)
    assert "*bold*" not in echo and "`c`" not in echo


async def test_slack_links_an_address_a_person_typed_to_that_address_not_to_a_look_alike(slack_settings, standin):
    # Slack sends a typed address as <address>; the time-zone step echoes it back in quotes
    async with running(slack_settings) as (client, lessonbot):
        await slack_says(client, lessonbot, standin, "/start")
        await slack_says(client, lessonbot, standin, "yes")
        await slack_says(client, lessonbot, standin, "Ann")
        [echo, *_] = await slack_says(client, lessonbot, standin, "<https://x.test/wiki/Time_zone_(UTC)>")
    assert "“<https://x.test/wiki/Time_zone_(UTC)>”" in echo, echo  # ˍ in it would link another page


# WhatsApp: Twilio's API through the twilio library --------------------------------------------------------------------


async def test_whatsapp_shows_a_hostile_profile_name_and_echo_as_typed(settings):
    number = "+15553330000"
    async with TwilioStandIn() as twilio, whatsapp_app(settings, twilio) as (app, webhooks):
        lessonbot = app.state.lessonbot

        async def says(text: str, **fields: str) -> list[str]:
            before = len(twilio.to(number))
            assert (await webhooks.message(number, text, **fields)).status_code == 200
            await lessonbot.settle()
            return [message.body or "" for message in twilio.to(number)[before:]]

        [greeting] = await says("/start", ProfileName=HOSTILE_NAME)
        await says("yes")
        await says("Ann")
        [echo, *_] = await says(HOSTILE_ZONE)
    shown_name = HOSTILE_NAME.replace("*", "∗").replace("_", "ˍ").replace("`", "ˋ")
    assert greeting.startswith(f"Hi {shown_name}! I'm Lessonbot."), greeting
    assert "“[x](https://evil.example) ∗bold∗ ˋcˋ <!channel> <@U123> &lt;”" in echo, echo
    for body in (greeting, echo):
        assert "*bold*" not in body and "_it_" not in body and "`c" not in body
        assert "](https://evil.example" in body and " (https://evil.example" not in body  # not read as a link


# The web chat: its JSON API, plain text and HTML ----------------------------------------------------------------------


async def web_says(client, lessonbot, session: str, text: str, after: int) -> list[dict]:
    response = await client.post("/chat/api/messages", json={"session": session, "text": text})
    assert response.status_code == 202
    await lessonbot.settle()
    response = await client.get("/chat/api/messages", params={"session": session, "after": after})
    return response.json()["replies"]


async def test_the_web_chat_shows_a_hostile_echo_as_typed_in_text_and_html(settings):
    async with running(settings) as (client, lessonbot):
        session = (await client.post("/chat/api/sessions")).json()["session"]
        after = 0
        for text in ("/start", "yes", "Ann"):
            after = (await web_says(client, lessonbot, session, text, after))[-1]["id"]
        [echo, *_] = await web_says(client, lessonbot, session, HOSTILE_ZONE, after)  # then the question again
    assert f"“{HOSTILE_ZONE}”" in echo["text"]
    assert f"“{html.escape(HOSTILE_ZONE, quote=False)}”" in echo["html"]
    assert_no_markup_from_outside(echo["html"])
    assert "<strong>" not in echo["html"] and "<em>" not in echo["html"]


async def test_lesson_one_of_the_sample_course_shows_its_emphasis_and_lists_in_the_web_chat(settings):
    async with running(settings) as (client, lessonbot):
        await import_sample(lessonbot)
        session = (await client.post("/chat/api/sessions")).json()["session"]
        shown: list[dict] = []

        async def send(**fields: str) -> None:
            after = shown[-1]["id"] if shown else 0
            assert (await client.post("/chat/api/messages", json={"session": session, **fields})).status_code == 202
            await lessonbot.settle()
            response = await client.get("/chat/api/messages", params={"session": session, "after": after})
            shown.extend(response.json()["replies"])

        async def press(label: str) -> None:
            [value] = [c["value"] for c in shown[-1].get("choices", ()) if c["label"].startswith(label)]
            await send(choice=value)

        for text in ("/start", "yes", "Ann", "Lisbon", "yes", "08:00", "every day"):
            await send(text=text)
        await press("Spot the phish")
        await press("1 lesson")
        await press("Start my first lesson")
        await press("Next")
    lesson = [reply for reply in shown if "Lesson 1 of" in reply["text"] or "smishing" in reply["text"]]
    first, second = lesson[0], shown[-1]
    assert "<em>smishing</em>" in first["html"] and "*smishing*" not in first["text"]
    assert "<ul><li><strong>Urgency</strong>: " in second["html"], second["html"]
    assert "- **Urgency**" not in second["text"] and "• Urgency:" in second["text"]


def test_whatsapp_numbered_choices_show_their_labels_as_typed():
    reply = Text("Pick **one**:", choices=(Choice("*Ann* _x_ ~y~ `z`", "a"), Choice("Ben", "b")))
    [body] = text_bodies(reply)
    assert body == "Pick *one*:\n\n1. ∗Ann∗ ˍxˍ ∼y∼ ˋzˋ\n2. Ben"
