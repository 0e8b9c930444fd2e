"""A WhatsApp learner pays by link and continues: Twilio's signed webhooks and the Twilio stand-in for the chat, the
real `stripe` client against the Stripe stand-in for the checkout, and Stripe's signed event for the payment."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from standins.stripe import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from storage.models import Conversation
from tests.channels.test_whatsapp_conversation import ANN, OPTION, Chat, twilio  # noqa: F401 (the fixture)
from tests.dialogs.learning_support import PAID, import_sample
from tests.dialogs.payment_support import checkout_event, entitlements, post_event
from tests.support import whatsapp_app


async def pick(chat: Chat, replies: list[str], label: str) -> list[str]:
    """Answer numbered options by the number of the one whose label starts with `label`, as a learner types it."""
    options = OPTION.findall(replies[-1])
    number = next(number for number, shown in options if shown.startswith(label))
    return await chat.say(number)


@pytest.fixture
async def shop(settings, twilio):
    """The app with WhatsApp and Stripe on, the paid example course, and Ann on WhatsApp."""
    async with StripeStandIn() as stripe_api, whatsapp_app(
        settings, twilio, stripe_secret_key=SECRET_KEY, stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base_url=stripe_api.base_url,
    ) as (app, webhooks):
        bot = app.state.lessonbot
        await import_sample(bot, PAID)
        ann = Chat(bot, webhooks, twilio, ANN)
        yield bot, webhooks, stripe_api, ann


async def test_a_whatsapp_learner_pays_by_link_and_continues(shop, twilio):
    bot, webhooks, stripe_api, ann = shop
    replies = await pick(ann, await ann.say("/start"), "Yes")
    replies = await ann.say("Ann")
    replies = await ann.say("Lisbon")
    replies = await pick(ann, replies, "Yes")
    replies = await ann.say("08:00")
    replies = await pick(ann, replies, "Every day")
    assert any("Passwords that hold — 3.00 GBP" in reply for reply in replies)
    replies = await pick(ann, replies, "Passwords that hold — 3.00 GBP")
    await pick(ann, replies, "1 lesson")

    [offer] = await ann.say("/buy")
    session = stripe_api.called("/v1/checkout/sessions")[0].result
    assert session["url"] in offer and re.search(r"\b3\.00 GBP\b", offer)
    assert session["metadata"]["course"] == "passwords-that-hold"

    before = len(twilio.to(ANN))
    response = await post_event(webhooks.client, checkout_event(stripe_api.pay(session["id"])))
    assert response.status_code == 200
    await bot.settle()
    bodies = [message.body or "" for message in twilio.to(ANN)[before:]]
    assert bodies[0].startswith("✅ Payment received: “Passwords that hold” is yours")
    assert bodies[1].startswith("📘 Lesson 1 of 3")
    assert len(await entitlements(bot)) == 1


async def test_a_payment_counts_after_stop_and_opens_no_window(shop, twilio):
    bot, webhooks, stripe_api, ann = shop
    await ann.say("/start")
    await ann.say("/buy passwords-that-hold")
    session = stripe_api.called("/v1/checkout/sessions")[0].result
    await ann.say("STOP")
    async with bot.db.sessions() as db_session:
        conversation = await db_session.scalar(select(Conversation))
        last_inbound_at = conversation.last_inbound_at
    before = len(twilio.to(ANN))
    await post_event(webhooks.client, checkout_event(stripe_api.pay(session["id"])))
    await bot.settle()
    assert len(await entitlements(bot)) == 1, "paid is paid, STOP or not"
    assert len(twilio.to(ANN)) == before, "nothing is sent to someone who opted out"
    async with bot.db.sessions() as db_session:
        assert (await db_session.scalar(select(Conversation))).last_inbound_at == last_inbound_at
