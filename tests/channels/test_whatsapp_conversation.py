"""Short WhatsApp conversations through the real app: numbered options answered by number or by words, STOP / START /
HELP, and an admin reached by their whatsapp: address.

The real dialogs' wording is theirs to change, so conversations with them compare replies with each other (the same
answer typed two ways gets the same reply); exact texts are checked with a small quiz dialog of the test's own.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from authoring.format import load_course
from authoring.indexing import ingest_course
from bot.config import knowledge_settings
from bot.core import Lessonbot
from channels.whatsapp import WhatsAppChannel
from dialogs.turn import Turn
from standins.openai import MODEL, cite_first_passage
from standins.twilio import (
    PUBLIC_BASE_URL,
    SENDER,
    TwilioStandIn,
    TwilioWebhooks,
)
from storage.models import AdminAuditEntry, Conversation, OutboxMessage
from tests.dialogs.learning_support import SAMPLE, import_sample
from tests.support import (
    openai,  # noqa: F401 (the fixture)
    whatsapp_app,
)

ANN, BEN = "+15551234567", "+15557654321"
OPTION = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)


@pytest.fixture
async def twilio():
    async with TwilioStandIn() as api:
        yield api


class Chat:
    """One learner on WhatsApp: say something, get back the bodies Twilio was asked to send them because of it."""

    def __init__(self, bot: Lessonbot, webhooks: TwilioWebhooks, twilio: TwilioStandIn, number: str = ANN) -> None:
        self.bot, self.webhooks, self.twilio, self.number = bot, webhooks, twilio, number

    async def say(self, text: str, **fields: str) -> list[str]:
        before = len(self.twilio.to(self.number))
        response = await self.webhooks.message(self.number, text, **fields)
        assert response.status_code == 200
        await self.bot.settle()
        return [message.body or "" for message in self.twilio.to(self.number)[before:]]


async def test_the_first_numbered_option_is_answered_by_number_and_by_words_alike(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        ann = Chat(app.state.lessonbot, webhooks, twilio, ANN)
        ben = Chat(app.state.lessonbot, webhooks, twilio, BEN)
        first = (await ann.say("/start"))[-1]
        assert first == (await ben.say("/start"))[-1]
        options = OPTION.findall(first)
        assert options and options[0][0] == "1", first

        by_number = await ann.say("1")
        by_words = await ben.say(options[0][1].upper() + "!")
        assert by_number and by_number == by_words
        assert by_number != await Chat(app.state.lessonbot, webhooks, twilio, "+15550001111").say("1")


async def quiz(turn: Turn) -> None:
    """A two-choice question, as a quiz dialog asks it."""
    if turn.text in ("alpha", "beta"):
        turn.say(f"You picked {turn.text}.")
    else:
        turn.say("Which letter comes second?", choices=[("Alpha", "alpha"), ("Beta", "beta")])


async def test_a_quiz_answered_by_number_by_keycap_by_words_and_out_of_range(settings, twilio):
    """The digit typed, or as the keycap emoji WhatsApp's keyboard offers (2️⃣; some keyboards leave out its U+FE0F),
    or the words, pick the option; a number that names none gets the question again."""
    channel = WhatsAppChannel(
        account_sid=twilio.account_sid, auth_token=twilio.auth_token, sender=SENDER,
        public_base_url=PUBLIC_BASE_URL, api_base_url=twilio.base_url,
    )
    bot = Lessonbot(settings, [channel], respond=quiz)
    app = Starlette(routes=channel.routes(bot))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_BASE_URL) as client:
            chat = Chat(bot, TwilioWebhooks(client, auth_token=twilio.auth_token), twilio)
            assert await chat.say("quiz") == ["Which letter comes second?\n\n1. Alpha\n2. Beta"]
            assert await chat.say("2") == ["You picked beta."]
            await chat.say("quiz")
            assert await chat.say(" Alpha. ") == ["You picked alpha."]
            await chat.say("quiz")
            assert await chat.say("3") == ["Which letter comes second?\n\n1. Alpha\n2. Beta"]
            assert await chat.say("#2") == ["You picked beta."]
            await chat.say("quiz")
            assert await chat.say("2\ufe0f\u20e3") == ["You picked beta."]
            await chat.say("quiz")
            assert await chat.say("1\u20e3") == ["You picked alpha."]
            await chat.say("quiz")
            assert await chat.say("3\ufe0f\u20e3") == ["Which letter comes second?\n\n1. Alpha\n2. Beta"]
            assert await chat.say("2") == ["You picked beta."]
            # That reply offered no choices: a number now is plain text, and the quiz asks again.
            assert await chat.say("1") == ["Which letter comes second?\n\n1. Alpha\n2. Beta"]
    finally:
        await bot.stop()
        await channel.close()


async def two_questions(turn: Turn) -> None:
    """Two questions a learner may have open at once, and what a choice of either says."""
    if turn.text == "first":
        turn.say("Which letter comes first?", choices=[("Alpha", "alpha"), ("Beta", "beta")])
    elif turn.text == "second":
        turn.say("Which colour is warmer?", choices=[("Blue", "blue"), ("Red", "red")])
    elif turn.text == "news":
        turn.say("Lesson 3 is out tomorrow.")
    else:
        turn.say(f"You picked {turn.text}.")


async def test_a_number_typed_in_reply_to_an_earlier_question_answers_that_question(settings, twilio):
    """WhatsApp lets a learner reply to one message (swipe to reply): Twilio names it (OriginalRepliedMessageSid).
    "1" in reply to the first question picks its first option, not the newest question's, nor "no options" after a
    message that offers none; a message replied to that offers nothing leaves the newest choices as they are."""
    channel = WhatsAppChannel(
        account_sid=twilio.account_sid, auth_token=twilio.auth_token, sender=SENDER,
        public_base_url=PUBLIC_BASE_URL, api_base_url=twilio.base_url,
    )
    bot = Lessonbot(settings, [channel], respond=two_questions)
    app = Starlette(routes=channel.routes(bot))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_BASE_URL) as client:
            chat = Chat(bot, TwilioWebhooks(client, auth_token=twilio.auth_token), twilio)
            await chat.say("first")
            first = twilio.to(ANN)[-1].sid
            await chat.say("second")
            assert await chat.say("1", OriginalRepliedMessageSid=first) == ["You picked alpha."]
            await chat.say("second")
            second = twilio.to(ANN)[-1].sid
            await chat.say("news")
            news = twilio.to(ANN)[-1].sid
            assert await chat.say("Red", OriginalRepliedMessageSid=second) == ["You picked red."]
            await chat.say("first")
            assert await chat.say("2", OriginalRepliedMessageSid=news) == ["You picked beta."]
    finally:
        await bot.stop()
        await channel.close()


async def conversation(app, number: str = ANN) -> Conversation:
    async with app.state.lessonbot.db.sessions() as session:
        return await session.scalar(select(Conversation).where(Conversation.chat_id == number))


async def statuses(app) -> list[str]:
    async with app.state.lessonbot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)))


async def test_after_stop_nothing_is_sent_until_start(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        bot = app.state.lessonbot
        chat = Chat(bot, webhooks, twilio)
        assert await chat.say("/start")
        sent_before_stop = len(twilio.to(ANN))

        assert await chat.say("Stop") == []
        assert (await conversation(app)).opted_out_at is not None
        assert await chat.say("hello") == []
        assert await chat.say("HELP") == []
        async with bot.db.transaction() as session:  # a lesson the scheduler writes meanwhile
            row = await conversation(app)
            session.add(OutboxMessage(conversation_id=row.id, channel="whatsapp", chat_id=ANN,
                                      payload={"kind": "text", "text": "Lesson 3"}))
        await bot.settle()
        assert len(twilio.to(ANN)) == sent_before_stop
        assert (await statuses(app))[-1] == "suppressed"
        assert set(await statuses(app)) == {"sent", "suppressed"}

        assert await chat.say("start")  # greeted again, as on first contact
        assert (await conversation(app)).opted_out_at is None
        assert await chat.say("help")


async def test_stop_sets_aside_what_was_waiting_and_other_opt_out_words_count_too(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        chat = Chat(app.state.lessonbot, webhooks, twilio)
        greeting = await chat.say("/start")
        async with app.state.lessonbot.db.transaction() as session:
            row = await conversation(app)
            session.add(OutboxMessage(conversation_id=row.id, channel="whatsapp", chat_id=ANN, status="waiting",
                                      payload={"kind": "text", "text": "Lesson 4"}))
        assert await chat.say("unsubscribe") == []
        assert (await statuses(app))[-1] == "suppressed"
        assert "Lesson 4" not in [message.body for message in twilio.to(ANN)]
        assert await chat.say("YES") == greeting  # Twilio's opt-in words other than START count too
        assert (await conversation(app)).opted_out_at is None


async def test_an_opt_out_word_that_is_an_offered_choice_answers_it(settings, twilio):
    """/stop offers "Cancel", which is also one of Twilio's opt-out words: typed at that question it cancels, as its
    number does, and the learner is not opted out; typed with no such choice offered, it opts out."""
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        bot = app.state.lessonbot
        ann, ben = Chat(bot, webhooks, twilio, ANN), Chat(bot, webhooks, twilio, BEN)
        asked = (await ann.say("/stop"))[-1]
        assert asked == (await ben.say("/stop"))[-1]
        assert ("3", "Cancel") in OPTION.findall(asked), asked
        by_number = await ann.say("3")
        assert by_number and await ben.say("Cancel") == by_number
        assert (await conversation(app, BEN)).opted_out_at is None

        assert await ben.say("cancel") == []  # no choice of that name now: Twilio's CANCEL
        assert (await conversation(app, BEN)).opted_out_at is not None

        await ann.say("/stop")
        question = twilio.to(ANN)[-1].sid
        assert await ann.say("/courses")  # a newer message, which offers no "Cancel"
        assert await ann.say("cancel", OriginalRepliedMessageSid=question) == by_number  # in reply to the question
        assert (await conversation(app, ANN)).opted_out_at is None


async def test_help_and_info_are_answered_as_help(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        chat = Chat(app.state.lessonbot, webhooks, twilio)
        asked = await chat.say("/help")
        assert asked and await chat.say("HELP") == asked and await chat.say("info") == asked


async def test_an_admin_is_written_as_their_whatsapp_address(settings, twilio):
    admin, learner = BEN, ANN
    async with whatsapp_app(settings, twilio, admins=(f"whatsapp:{admin}",)) as (app, webhooks):
        stats = await Chat(app.state.lessonbot, webhooks, twilio, admin).say("/admin stats")
        denied = await Chat(app.state.lessonbot, webhooks, twilio, learner).say("/admin stats")
        async with app.state.lessonbot.db.sessions() as session:
            audit = (await session.execute(select(AdminAuditEntry.identity, AdminAuditEntry.outcome))).all()
    assert stats and denied and stats != denied
    assert sorted(audit) == [(f"whatsapp:{learner}", "denied"), (f"whatsapp:{admin}", "ok")]


async def model_answer(settings, twilio, openai, written: str) -> str:
    """What Ann gets on WhatsApp when she asks the course a question and the model writes `written` after a sentence
    of the course's, cited."""
    openai.reply = lambda request: f"{cite_first_passage(request)} {written}"
    with_model = {"openai_base_url": openai.base_url, "openai_api_key": "sk-test", "openai_model": MODEL}
    async with whatsapp_app(settings, twilio, **with_model) as (app, webhooks):
        bot = app.state.lessonbot
        await import_sample(bot)
        await asyncio.to_thread(ingest_course, load_course(SAMPLE), knowledge_settings(bot.settings))
        chat = Chat(bot, webhooks, twilio)
        for said in ("/start", "yes", "Ann", "Lisbon", "yes", "08:00", "every day", "1", "1"):
            assert await chat.say(said), said
        return "\n".join(await chat.say("what is smishing?"))


async def test_a_model_answer_keeps_its_web_and_mail_addresses_whole_and_its_markup_plain(settings, twilio, openai):
    """WhatsApp has no escape, so a model's _ * ~ show as look-alikes; but in a web or e-mail address a look-alike
    would make another address (https://example.com/a_b is not https://example.com/aˍb): those go as written."""
    address, mail = "https://example.com/~ann/report_a_scam?ref=sms_1", "fraud_desk@example.com"
    answer = await model_answer(settings, twilio, openai, f"Report it at {address}, or write to {mail}. _Now_.")
    assert f"Report it at {address}, or write to {mail}. ˍNowˍ." in answer, answer


async def test_a_model_answers_markdown_is_taken_out_around_its_addresses_never_inside_them(settings, twilio, openai):
    """A model's **bold** and `code` are reduced to plain text, but the __ and * of a web address are the address's:
    https://docs.python.org/…#object.__init__ stays so, not …#object.init."""
    python, starred = "https://docs.python.org/3/reference/datamodel.html#object.__init__", "https://x.test/a*b*c"
    written = f"See **{python}** and `{starred}`, or *both* at https://x.test/__all__."
    answer = await model_answer(settings, twilio, openai, written)
    assert f"See {python} and {starred}, or both at https://x.test/__all__." in answer, answer


MEDIA_URL = f"https://api.twilio.com/2010-04-01/Accounts/{'AC' + '5' * 32}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
NOTHING_TYPED = {
    "voice note": {"NumMedia": "1", "MediaUrl0": MEDIA_URL, "MediaContentType0": "audio/ogg", "MessageType": "audio"},
    "location": {"Latitude": "38.7223", "Longitude": "-9.1393", "Address": "Praça do Comércio, Lisboa",
                 "MessageType": "location"},
    "contact card": {"NumMedia": "1", "MediaUrl0": MEDIA_URL, "MediaContentType0": "text/vcard",
                     "MessageType": "contacts"},
}


async def test_a_voice_note_a_location_or_a_contact_card_is_told_only_typed_words_are_read(settings, twilio):
    """What the bot cannot read gets a reply that says so, as it does at a question that waits for words: it is not
    taken for an empty question ("What would you like to know?")."""
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        bot = app.state.lessonbot
        await import_sample(bot)
        chat = Chat(bot, webhooks, twilio)
        for said in ("/start", "yes", "Ann", "Lisbon", "yes", "08:00", "every day", "1", "1", "2"):
            assert await chat.say(said), said
        told = {kind: await chat.say("", **fields) for kind, fields in NOTHING_TYPED.items()}
    assert set(map(tuple, told.values())) == {("I can only read words here: please type your question.",)}, told


async def test_a_new_person_who_greets_in_spanish_is_set_up_in_spanish(settings, twilio):
    """WhatsApp says nothing of a person's language (Telegram's app and the web chat's page do): one who opens with
    "Hola" is welcomed and set up in Spanish, to the end (the English course she picks does not change it), one who
    opens with "Hi" in English."""
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        await import_sample(app.state.lessonbot)
        ana = Chat(app.state.lessonbot, webhooks, twilio, ANN)
        ben = Chat(app.state.lessonbot, webhooks, twilio, BEN)
        [welcome] = await ana.say("¡Hola! Quiero empezar")
        assert welcome.startswith("¡Hola") and "Soy Lessonbot." in welcome and "1. Sí, empecemos" in welcome
        assert (await ana.say("1"))[0].startswith("¿Cómo quieres que te llame?")
        for text in ("Ana", "Madrid", "sí", "9", "todos los días", "1"):
            await ana.say(text)
        [done] = await ana.say("1")
        assert done.startswith("¡Todo listo, Ana!") and "Curso: Spot the phish, five minutes a day." in done
        [welcome] = await ben.say("Hi")
        assert welcome.startswith("Hi") and "I'm Lessonbot." in welcome and "1. Yes, let's start" in welcome
