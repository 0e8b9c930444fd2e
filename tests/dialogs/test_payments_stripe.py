"""Buying a course with Stripe Checkout: the real `stripe` client against the Stripe stand-in, Stripe's events (built
from its own payloads, signed as Stripe signs them) posted to the real app's webhook, and the learner's conversation
through the real pipeline."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time

import pytest
from sqlalchemy import select

from bot.payments import stripe_amount
from dialogs.payments import CannotCharge
from standins.stripe import StripeError, StripeStandIn
from storage.courses import SOURCE_PURCHASE
from storage.models import InboundMessage, OutboxMessage
from storage.payments import PaymentEvent, PaymentStatus
from tests.dialogs.learning_support import PAID, Learning, answer_until, import_sample, onboard
from tests.dialogs.payment_support import (
    INVOICE,
    PUBLIC,
    SUBSCRIPTION,
    _wrapped,
    checkout_event,
    count,
    dispute_event,
    entitlements,
    events,
    payments,
    post_event,
    promotion_shop,
    refund_event,
    stripe_settings,
    takings,
)
from tests.support import RecordingChannel, running

PRICE = "3.00 GBP"  # courses/examples/passwords


@pytest.fixture
async def stripe_api():
    async with StripeStandIn() as api:
        yield api


@pytest.fixture
async def shop(settings, stripe_api):
    """The app with Stripe on, a learner on a recording channel, and the paid example course."""
    channel = RecordingChannel()
    async with running(stripe_settings(settings, stripe_api.base_url, admins=("test:boss",)),
                       channels=[channel]) as (client, bot):
        await import_sample(bot, PAID)
        yield client, bot, Learning(bot, channel), Learning(bot, channel, chat="boss")


async def through_the_preview(t: Learning, bot) -> list[str]:
    await onboard(t, course=f"Passwords that hold — {PRICE}")
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉 Lesson done")
    return await t.press("More now")


async def bought_link(t: Learning, bot, stripe_api) -> dict:
    [locked] = await through_the_preview(t, bot)
    assert locked.startswith("Lesson 2 is part of the full course “Passwords that hold”")
    assert t.labels() == [f"Buy — {PRICE}", "Later"]
    [offer] = await t.press(f"Buy — {PRICE}")
    [call] = stripe_api.called("/v1/checkout/sessions")
    session = call.result
    assert session["url"] in offer and PRICE in offer
    return session


async def bought(client, bot, t: Learning, stripe_api) -> dict:
    """Through the preview, the checkout page offered, paid and confirmed: the session as Stripe reports it paid."""
    session = await bought_link(t, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    await post_event(client, checkout_event(paid))
    await bot.settle()
    return paid


async def linked_to_another_app(t: Learning, bot) -> Learning:
    """`t`'s chat linked (/link) to the learner of another chat, onboarded there: that chat."""
    from tests.dialogs.test_linking import code_from

    web = Learning(bot, t.channel, chat=f"{t.chat}-web")
    await onboard(web, course=f"Passwords that hold — {PRICE}")
    [linked] = await t.say(f"/link {await code_from(web)}")
    assert linked.startswith("Linked!")
    return web


async def test_a_learner_pays_by_link_and_the_next_lesson_opens(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    [call] = stripe_api.called("/v1/checkout/sessions")
    user_id = (await payments(bot))[0].user_id
    assert call.params["line_items"][0]["price_data"] == {"currency": "gbp", "unit_amount": "300",
                                                          "product_data": {"name": "Passwords that hold"}}
    assert call.params["metadata"]["user_id"] == str(user_id)
    assert call.params["client_reference_id"] == f"u{user_id}-c{(await payments(bot))[0].course_id}"
    assert call.params["success_url"].startswith(f"{PUBLIC}/payments/done")

    # The success page grants nothing: only the signed event does.
    page = await client.get("/payments/done?lang=en")
    assert page.status_code == 200 and "Go back to the chat" in page.text
    assert page.headers["x-frame-options"] == "DENY"  # no other site shows it in a frame
    left = await client.get("/payments/cancelled?lang=es")
    assert left.status_code == 200 and "No se ha cobrado nada" in left.text
    assert await entitlements(bot) == []

    before = len(ann.channel.texts("ann"))
    response = await post_event(client, checkout_event(stripe_api.pay(session["id"])))
    assert response.status_code == 200 and response.json()["outcome"] == "forwarded"
    await bot.settle()
    confirmed, lesson = ann.channel.texts("ann")[before:]
    assert confirmed.startswith("✅ Payment received: “Passwords that hold” is yours")
    assert lesson.startswith("📘 Lesson 2 of 3")
    [granted] = await entitlements(bot)
    assert granted.source == SOURCE_PURCHASE and granted.reference == f"stripe:{session['id']}"
    [purchases] = await ann.say("/purchases")
    assert "Passwords that hold — 3.00 GBP" in purchases and "Receipt no. LB-" in purchases


async def test_the_same_event_twenty_times_at_once_grants_once_and_confirms_once(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    event = checkout_event(paid)
    # Stripe also sends the asynchronous success for the same session, out of order, ahead of the rest.
    early = checkout_event(paid, "checkout.session.async_payment_succeeded")
    responses = await asyncio.gather(post_event(client, early), *[post_event(client, event) for _ in range(20)])
    assert [r.status_code for r in responses] == [200] * 21
    assert sorted(r.json()["outcome"] for r in responses).count("forwarded") == 2  # each event id once
    await bot.settle()
    assert len(await entitlements(bot)) == 1
    assert sum(text.startswith("✅ Payment received") for text in ann.channel.texts("ann")) == 1
    assert len(await events(bot)) == 2
    assert (await payments(bot))[0].status == PaymentStatus.PAID


async def test_forged_and_stale_signatures_are_refused_and_nothing_is_stored(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    event = checkout_event(stripe_api.pay(session["id"]))
    inbound_before = await count(bot, InboundMessage)
    forged = await post_event(client, event, secret="whsec_someone_else")
    stale = await post_event(client, event, timestamp=int(time.time()) - 301)
    missing = await client.post("/webhooks/stripe", content=b"{}", headers={"content-type": "application/json"})
    assert [forged.status_code, stale.status_code, missing.status_code] == [400, 400, 400]
    assert "STRIPE_WEBHOOK_SECRET" in forged.json()["error"]
    assert await count(bot, PaymentEvent) == 0 and await count(bot, InboundMessage) == inbound_before
    assert await entitlements(bot) == []


async def test_an_event_for_no_payment_of_ours_is_recorded_and_acknowledged(shop, stripe_api):
    client, bot, _ann, _boss = shop
    stranger = {"id": "cs_test_not_ours", "amount_total": 999, "currency": "eur", "metadata": {"user_id": "1"},
                "client_reference_id": "u1-c1", "payment_intent": "pi_x", "payment_status": "paid"}
    response = await post_event(client, checkout_event(stranger))
    assert response.status_code == 200 and response.json()["outcome"] == "no payment of ours matches it"
    [event] = await events(bot)
    assert event.outcome == "no payment of ours matches it"
    assert await entitlements(bot) == []


@pytest.mark.parametrize(
    ("changes", "why"),
    [({"amount_total": 1}, "paid 1 gbp"), ({"currency": "usd"}, "paid 300 usd"),
     ({"metadata": {"user_id": "999999", "course_id": "1"}}, "metadata"),
     ({"client_reference_id": "u999999-c1"}, "client_reference_id")],
    ids=["amount", "currency", "metadata tampered", "reference tampered"],
)
async def test_a_payment_that_does_not_match_the_offer_is_given_back_once(shop, stripe_api, changes, why):
    client, bot, ann, boss = shop
    session = await bought_link(ann, bot, stripe_api)
    before = len(ann.channel.texts("ann"))
    paid = stripe_api.pay(session["id"])
    event = checkout_event(paid, **changes)
    await post_event(client, event)
    await bot.settle()
    assert await entitlements(bot) == []
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REJECTED and why in payment.note and payment.refunded_at is not None
    [refund] = stripe_api.called("/v1/refunds")
    assert refund.params == {"payment_intent": paid["payment_intent"]}
    [told] = ann.channel.texts("ann")[before:]
    assert told == ("The payment I received for “Passwords that hold” did not match what you were offered "
                    f"({PRICE}), so I gave it back and unlocked nothing (receipt no. LB-{payment.id:06d}). Send /buy "
                    "passwords-that-hold to pay again.")

    # Redelivered, confirmed again by another event, and Stripe's report of the refund: nothing more.
    await post_event(client, event)
    await post_event(client, checkout_event(paid, "checkout.session.async_payment_succeeded", **changes))
    await post_event(client, refund_event(paid))
    await bot.settle()
    assert len(stripe_api.called("/v1/refunds")) == 1 and len(ann.channel.texts("ann")) == before + 1
    assert await entitlements(bot) == [] and (await payments(bot))[0].status == PaymentStatus.REJECTED
    assert await takings(bot) == []
    [listed] = await boss.say("/admin payments")
    assert f"LB-{payment.id:06d} · rejected (refunded) · 3.00 GBP" in listed


async def test_a_payment_that_does_not_match_and_cannot_be_given_back_sends_the_buyer_to_support(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    before = len(ann.channel.texts("ann"))
    stripe_api.fail("/v1/refunds", StripeError.refused())
    await post_event(client, checkout_event(stripe_api.pay(session["id"]), amount_total=1))
    await bot.settle()
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REJECTED and payment.refunded_at is None
    [told] = ann.channel.texts("ann")[before:]
    assert "couldn't match" in told and "/paysupport" in told


async def test_a_refund_revokes_access_and_the_learner_is_told_once(shop, stripe_api):
    client, bot, ann, boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    [listed] = await boss.say("/admin payments")
    assert f"LB-{payment.id:06d} · paid · 3.00 GBP · passwords-that-hold" in listed
    [refunded] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert refunded.startswith(f"Refunded payment LB-{payment.id:06d}")
    assert stripe_api.refunds[0]["payment_intent"] == paid["payment_intent"]
    await bot.dispatcher.flush(10)
    assert any(text.startswith("Your payment for “Passwords that hold” was refunded")
               for text in ann.channel.texts("ann"))
    # Stripe then reports the refund: already settled, so nothing more is said.
    told = len(ann.channel.texts("ann"))
    await post_event(client, refund_event(paid))
    await bot.settle()
    assert len(ann.channel.texts("ann")) == told
    [revoked] = await entitlements(bot)
    assert revoked.revoked_at is not None
    [locked] = await ann.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")


async def test_a_refund_of_no_payment_names_it_and_says_where_the_numbers_are(shop, stripe_api):
    """/admin refund with a number no payment has is told there is no such payment (in its receipt's form) and
    where the numbers are, not that it is "not a paid payment"; one that is no longer paid is told so, by its
    receipt."""
    client, bot, ann, boss = shop
    await bought(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    missing = f"LB-{payment.id + 1:06d}"
    [none] = await boss.say(f"/admin refund {missing}")
    assert none == f"No payment {missing}: give its number from /admin payments."
    [bare] = await boss.say(f"/admin refund {payment.id + 1}")
    assert bare == none
    await boss.say(f"/admin refund LB-{payment.id:06d}")
    [again] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert again == f"Payment LB-{payment.id:06d} is not a paid payment (see /admin payments)."
    assert len(stripe_api.refunds) == 1


async def test_a_refund_is_of_the_payment_typed_or_of_none(shop, stripe_api):
    """Only a payment's number as /admin payments writes it (LB-000012, lb 12, #12, 12) names a payment: "-1",
    "1.0" or "1 2" are no payment's number, so nothing is refunded and the usage is shown, never payment 1 or 12."""
    client, bot, ann, boss = shop
    await bought(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    usage = "Usage: /admin refund PAYMENT — the payment's number from /admin payments."
    for typed in (f"-{payment.id}", f"+{payment.id}", f"{payment.id}.", f"LB-{payment.id:06d}/2", f"{payment.id} 2",
                  f"LB-{payment.id:06d} LB-{payment.id + 1:06d}", f"{payment.id // 10 or ''}.{payment.id % 10}"):
        assert await boss.say(f"/admin refund {typed}") == [usage], typed
    assert stripe_api.refunds == []
    [still] = await payments(bot)
    assert still.status == PaymentStatus.PAID
    [refunded] = await boss.say(f"/admin refund #{payment.id}")
    assert refunded.startswith(f"Refunded payment LB-{payment.id:06d}")


async def test_an_erased_buyers_payment_is_refunded_with_no_one_to_tell(shop, stripe_api):
    """The buyer erased their data (the sale kept, detached from them, with no chat): the admin's refund goes
    through, and the admin hears that no one was told, where a notice would have gone to no chat at all."""
    client, bot, ann, boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    await ann.say("/stop")
    await ann.press("Stop and delete my data")
    [payment] = await payments(bot)
    assert payment.user_id is None and payment.chat_id == ""

    [refunded] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert refunded == (f"Refunded payment LB-{payment.id:06d}. Its buyer erased their data, so there was no access "
                        "to revoke and no one to tell.")
    assert stripe_api.refunds[0]["payment_intent"] == paid["payment_intent"]
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    async with bot.db.sessions() as session:
        assert not list(await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == "")))


async def test_a_refund_made_in_stripe_revokes_through_its_event(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    before = len(ann.channel.texts("ann"))
    await post_event(client, refund_event(paid))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told.startswith("Your payment for “Passwords that hold” was refunded")
    assert (await entitlements(bot))[0].revoked_at is not None


async def test_a_delayed_payment_is_confirmed_when_it_clears(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    before = len(ann.channel.texts("ann"))
    await post_event(client, checkout_event(stripe_api.pay(session["id"], payment_status="unpaid")))
    await bot.settle()
    [waiting] = ann.channel.texts("ann")[before:]
    assert waiting.startswith("Thanks! Your payment is on its way")
    assert (await payments(bot))[0].status == PaymentStatus.PROCESSING and await entitlements(bot) == []
    cleared = checkout_event(stripe_api.pay(session["id"]), "checkout.session.async_payment_succeeded")
    await post_event(client, cleared)
    await bot.settle()
    confirmed, lesson = ann.channel.texts("ann")[before + 1:]
    assert confirmed.startswith("✅ Payment received") and lesson.startswith("📘 Lesson 2 of 3")


async def test_a_failed_payment_says_so_and_a_late_expiry_changes_nothing(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    before = len(ann.channel.texts("ann"))
    unpaid = stripe_api.pay(session["id"], payment_status="unpaid")
    await post_event(client, checkout_event(unpaid, "checkout.session.async_payment_failed"))
    await post_event(client, checkout_event(unpaid, "checkout.session.expired"))
    await bot.settle()
    [failed] = ann.channel.texts("ann")[before:]
    assert failed == ("Your payment of 3.00 GBP for “Passwords that hold” did not go through, so nothing was charged. "
                      "Send /buy passwords-that-hold to try again.")
    assert (await payments(bot))[0].status == PaymentStatus.FAILED and await entitlements(bot) == []


async def test_when_stripe_refuses_the_checkout_the_learner_is_told_and_nothing_is_kept(settings):
    channel = RecordingChannel()
    async with StripeStandIn(secret_key="sk_test_another_account") as refusing, running(
        stripe_settings(settings, refusing.base_url), channels=[channel],
    ) as (_client, bot):
        await import_sample(bot, PAID)
        [answer] = await Learning(bot, channel).say("/buy passwords-that-hold")
        assert answer.startswith("I couldn't open the payment page just now.")
        assert await payments(bot) == [] and refusing.called("/v1/checkout/sessions") == []


async def test_a_buyer_who_deletes_their_data_leaves_the_sale_as_a_record_without_them(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    await post_event(client, checkout_event(stripe_api.pay(session["id"])))
    await bot.settle()
    assert len(await entitlements(bot)) == 1

    await ann.say("/stop")
    await ann.press("Stop and delete my data")

    [sale] = await payments(bot)
    assert sale.user_id is None and sale.chat_id == "" and sale.sender_id == ""
    assert (sale.amount_minor, sale.currency, sale.reference) == (300, "GBP", session["id"])
    assert await entitlements(bot) == []
    assert all(event.payload == {} for event in await events(bot))  # Stripe's payloads carry the buyer's e-mail


async def test_a_refund_reported_before_the_payment_unlocks_nothing(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    early = await post_event(client, refund_event(paid))
    assert early.json()["outcome"] == "no payment of ours matches it"  # nothing carries its payment intent yet
    before = len(ann.channel.texts("ann"))
    await post_event(client, checkout_event(paid))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told.startswith("Your payment for “Passwords that hold” was refunded before it was confirmed")
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED and await entitlements(bot) == []


async def test_a_promotion_code_takes_its_discount_off_and_the_rest_must_match(settings):
    async with promotion_shop(settings, PAID) as (stripe_api, client, bot, ann, boss):
        session = await bought_link(ann, bot, stripe_api)
        assert stripe_api.called("/v1/checkout/sessions")[0].params["allow_promotion_codes"] == "true"
        await post_event(client, checkout_event(stripe_api.pay(session["id"], discount=100)))
        await bot.settle()
        [payment] = await payments(bot)
        assert payment.status == PaymentStatus.PAID and payment.discount_minor == 100
        [listed] = await boss.say("/admin payments")
        assert "3.00 GBP (−1.00 GBP) · passwords-that-hold" in listed
        assert "passwords-that-hold: 2.00 GBP (1 payment, 0 refunded)" in listed
        [purchases] = await ann.say("/purchases")
        assert "Passwords that hold — 2.00 GBP" in purchases


async def test_without_promotion_codes_a_discounted_payment_grants_nothing(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    assert "allow_promotion_codes" not in stripe_api.called("/v1/checkout/sessions")[0].params
    discounted = stripe_api.pay(session["id"]) | {"amount_total": 200,
                                                  "total_details": {"amount_discount": 100}}
    await post_event(client, checkout_event(discounted))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.REJECTED and await entitlements(bot) == []


async def test_in_a_group_buy_and_purchases_answer_in_the_private_chat(shop, stripe_api):
    from tests.dialogs.test_linking import in_group

    client, bot, ann, _boss = shop
    await onboard(ann, course=f"Passwords that hold — {PRICE}")
    [sent] = await in_group(bot, ann.channel, "/buy passwords-that-hold", sender="ann")
    assert sent == "I've sent you how to pay in our private chat."
    [call] = stripe_api.called("/v1/checkout/sessions")
    offer = ann.channel.texts("ann")[-1]
    assert offer.startswith("To unlock “Passwords that hold”") and call.result["url"] in offer
    assert ann.last().links[0].label == f"Pay {PRICE}" and ann.last().links[0].url == call.result["url"]
    assert not any(call.result["url"] in text for text in ann.channel.texts("-100"))
    [payment] = await payments(bot)
    assert payment.chat_id == "ann"

    await post_event(client, checkout_event(stripe_api.pay(call.result["id"])))
    await bot.settle()
    assert any(text.startswith("✅ Payment received") for text in ann.channel.texts("ann"))
    [receipts] = await in_group(bot, ann.channel, "/purchases", sender="ann")
    assert receipts == "I've sent you your purchases in our private chat."
    assert ann.channel.texts("ann")[-1].startswith("Your purchases:")

    # Bob never opened a private chat with the bot: no link is made for him in the group.
    await in_group(bot, ann.channel, "/start", sender="bob")
    [told] = await in_group(bot, ann.channel, "/buy passwords-that-hold", sender="bob")
    assert told.startswith("A payment is yours alone: send /buy to me in a private chat")
    assert len(stripe_api.called("/v1/checkout/sessions")) == 1


async def test_partial_refunds_count_in_the_revenue_and_leave_the_access(shop, stripe_api):
    """Part of a payment given back in the Stripe Dashboard: the revenue counts what went back (Stripe reports the
    sum given back so far, so a second partial refund says both, and a repeated report changes nothing), and the
    learner keeps the course; the rest given back later is a refund like any other."""
    client, bot, ann, boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    for given_back, net in ((100, "2.00"), (250, "0.50"), (250, "0.50")):
        partial = refund_event(paid)
        partial["data"]["object"].update(amount_refunded=given_back, refunded=False)
        assert (await post_event(client, partial)).json()["outcome"] == "forwarded"
        await bot.settle()
        [listed] = await boss.say("/admin payments")
        assert f"passwords-that-hold: {net} GBP (1 payment, 0 refunded)" in listed
    assert await takings(bot) == [(1, 0, 300, 0, 250)]
    assert (await payments(bot))[0].status == PaymentStatus.PAID
    assert (await entitlements(bot))[0].revoked_at is None

    await post_event(client, refund_event(paid))
    await bot.settle()
    assert await takings(bot) == [(1, 0, 300, 1, 300)]
    assert (await entitlements(bot))[0].revoked_at is not None


async def test_a_partial_refund_reported_before_the_payment_leaves_it_standing(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    partial = refund_event(paid)
    partial["data"]["object"].update(amount_refunded=50, refunded=False)
    await post_event(client, partial)
    await post_event(client, checkout_event(paid))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.PAID and len(await entitlements(bot)) == 1


async def test_a_promotion_code_for_the_whole_price_unlocks_the_course(settings):
    channel = RecordingChannel()
    async with StripeStandIn() as stripe_api, running(
        stripe_settings(settings, stripe_api.base_url, stripe_promotion_codes=True), channels=[channel],
    ) as (client, bot):
        await import_sample(bot, PAID)
        ann = Learning(bot, channel)
        session = await bought_link(ann, bot, stripe_api)
        free = stripe_api.pay(session["id"], discount=300, payment_status="no_payment_required")
        await post_event(client, checkout_event(free))
        await bot.settle()
        [payment] = await payments(bot)
        assert payment.status == PaymentStatus.PAID and payment.discount_minor == 300
        assert any(text.startswith("✅ Payment received") for text in ann.channel.texts("ann"))


async def test_a_buyer_who_links_their_chat_to_another_app_keeps_the_purchase_and_its_later_events(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    web = await linked_to_another_app(ann, bot)
    [payment] = await payments(bot)
    [granted] = await entitlements(bot)
    assert payment.user_id == granted.user_id is not None  # the sale went with the chat to the learner it joined
    [listing] = await web.say("/purchases")
    assert "Passwords that hold — 3.00 GBP" in listing

    await post_event(client, refund_event(paid))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert (await entitlements(bot))[0].revoked_at is not None
    assert ann.channel.texts("ann")[-1].startswith("Your payment for “Passwords that hold” was refunded")


async def test_a_second_checkout_page_paid_as_well_is_given_back(shop, stripe_api):
    client, bot, ann, _boss = shop
    first = await bought_link(ann, bot, stripe_api)
    await ann.say("/buy")  # a second page, opened before the first was paid
    second = stripe_api.called("/v1/checkout/sessions")[-1].result
    assert second["id"] != first["id"]
    await post_event(client, checkout_event(stripe_api.pay(first["id"])))
    await bot.settle()
    before = len(ann.channel.texts("ann"))
    again = stripe_api.pay(second["id"])
    await post_event(client, checkout_event(again))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told.startswith("You already had “Passwords that hold”, so I gave this payment back")
    assert [refund["payment_intent"] for refund in stripe_api.refunds] == [again["payment_intent"]]
    statuses = sorted(payment.status for payment in await payments(bot))
    assert statuses == [PaymentStatus.PAID, PaymentStatus.REFUNDED] and len(await entitlements(bot)) == 1


async def test_a_checkout_opened_before_the_chat_was_linked_and_paid_after_unlocks_for_the_learner(shop, stripe_api):
    """The page names the learner the offer was made to, whom /link then joined to another (`offered_to`)."""
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    await linked_to_another_app(ann, bot)
    await post_event(client, checkout_event(stripe_api.pay(session["id"])))
    await bot.settle()
    [payment] = await payments(bot)
    [granted] = await entitlements(bot)
    assert payment.status == PaymentStatus.PAID and granted.user_id == payment.user_id != payment.offered_to
    assert any(text.startswith("✅ Payment received") for text in ann.channel.texts("ann"))


async def test_signed_events_of_shapes_stripe_never_sends_are_answered_without_a_crash(shop, stripe_api):
    """A field of another shape (a string where an object belongs, a list of numbers, an id in other digits or
    past 64 bits) reads as saying nothing; a body nested too deep is refused; no event ends in a 500, which Stripe
    would retry for days."""
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    invoice = json.loads(INVOICE.read_text())
    subscription = json.loads(SUBSCRIPTION.read_text())
    odd = [
        _wrapped("invoice.paid", {**invoice, "parent": "x"}),
        _wrapped("invoice.paid", {**invoice, "parent": None, "lines": [1], "payments": {"data": ["x"]}}),
        _wrapped("customer.subscription.updated", {**subscription, "id": "sub_odd", "items": "x",
                                                   "metadata": {"user_id": "²", "course_id": "1"}}),
        _wrapped("customer.subscription.updated", {**subscription, "id": "sub_odd2",
                                                   "metadata": {"user_id": "9" * 30, "course_id": "1"}}),
        checkout_event(stripe_api.pay(session["id"]), metadata="x", total_details={"amount_discount": "5"}),
    ]
    for event in odd:
        response = await post_event(client, event)
        assert response.status_code == 200, response.text
    deep = "[" * 3000 + "]" * 3000
    assert (await post_event(client, {}, body=deep)).status_code == 400
    await bot.settle()
    assert await entitlements(bot) == []
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REJECTED and "discount" in payment.note


def priced_copy(tmp_path, slug: str, amount: str, currency: str):
    """courses/examples/passwords as `slug`, priced at `amount` `currency` (a copy under tmp_path)."""
    folder = tmp_path / slug
    shutil.copytree(PAID, folder)
    course_file = folder / "course.yaml"
    text = course_file.read_text().replace("id: passwords-that-hold", f"id: {slug}")
    text = text.replace("title: Passwords that hold", f"title: Passwords {slug}")
    price = f"  amount: {amount}\n  currency: {currency}\n"
    course_file.write_text(text.replace("  amount: 3.00\n  currency: GBP\n", price))
    return folder


def test_amounts_go_to_stripe_in_its_units_and_come_back_in_ours():
    assert stripe_amount(300, "GBP") == 300 and stripe_amount(500, "JPY") == 500
    assert stripe_amount(5000, "ISK") == 500000 and stripe_amount(500000, "ISK", back=True) == 5000
    assert stripe_amount(500000, "MGA") == 5000 and stripe_amount(5000, "MGA", back=True) == 500000
    assert stripe_amount(5120, "KWD") == 5120
    for amount, currency in ((500050, "MGA"), (5125, "KWD"), (1000, "IQD"), (150, "XTR")):
        with pytest.raises(CannotCharge):
            stripe_amount(amount, currency)
    with pytest.raises(CannotCharge):
        stripe_amount(150, "ISK", back=True)  # no whole króna: matches no offer


async def test_a_currency_stripe_counts_otherwise_is_charged_in_stripes_units(shop, stripe_api, tmp_path, caplog):
    """ISK: two-decimal at Stripe, whole krónur (ISO 4217: none); MGA: zero-decimal at Stripe (ISO: two). A price
    Stripe cannot charge (half an ariary) is refused, in one line of the log, and nothing is opened at Stripe."""
    client, bot, ann, _boss = shop
    for slug, amount, currency in (("isk", "5000", "ISK"), ("mga", "5000.00", "MGA"), ("odd-mga", "5000.50", "MGA")):
        await import_sample(bot, priced_copy(tmp_path, slug, amount, currency))
    await onboard(ann, course=f"Passwords that hold — {PRICE}")
    [offer] = await ann.say("/buy isk")
    [call] = stripe_api.called("/v1/checkout/sessions")
    assert "(5000 ISK)" in offer and call.params["line_items"][0]["price_data"]["unit_amount"] == "500000"
    response = await post_event(client, checkout_event(stripe_api.pay(call.result["id"])))
    assert response.json()["outcome"] == "forwarded"
    await bot.settle()
    assert ann.channel.texts("ann")[-2].startswith("✅ Payment received: “Passwords isk” is yours")
    assert [(p.status, p.amount_minor, p.currency) for p in await payments(bot)] == [("paid", 5000, "ISK")]

    await ann.say("/buy mga")
    assert stripe_api.called("/v1/checkout/sessions")[-1].params["line_items"][0]["price_data"]["unit_amount"] == "5000"
    with caplog.at_level(logging.ERROR, logger="dialogs.payments"):
        [refused] = await ann.say("/buy odd-mga")
    assert refused.startswith("“Passwords odd-mga” can't be bought here yet.")
    assert len(stripe_api.called("/v1/checkout/sessions")) == 2
    [line] = [record.getMessage() for record in caplog.records if record.name == "dialogs.payments"]
    assert line.endswith("Stripe cannot charge 5000.50 MGA: it charges MGA in whole units only") and "\n" not in line


async def test_access_for_some_days_does_not_stop_a_learner_buying(shop, stripe_api):
    """An admin's grant for 7 days (or a code's) runs out: the learner may buy the course for good meanwhile."""
    client, bot, ann, boss = shop
    await onboard(ann, course=f"Passwords that hold — {PRICE}")
    [granted] = await boss.say("/admin grant test:ann passwords-that-hold 7")
    assert " until " in granted
    [offer] = await ann.say("/buy")
    [call] = stripe_api.called("/v1/checkout/sessions")
    assert call.result["url"] in offer
    await post_event(client, checkout_event(stripe_api.pay(call.result["id"])))
    await bot.settle()
    assert any(text.startswith("✅ Payment received") for text in ann.channel.texts("ann"))
    assert sorted(e.source for e in await entitlements(bot) if e.revoked_at is None) == ["grant", "purchase"]
    assert stripe_api.refunds == []  # bought, not "bought twice"
    [owned] = await ann.say("/buy")
    assert owned.startswith("You already have the whole of “Passwords that hold”.")


async def test_a_buyers_open_checkout_is_closed_when_they_delete_their_data(shop, stripe_api):
    _client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    await ann.say("/stop")
    [done] = await ann.say("stop and delete my data")
    assert done.startswith("Done: I deleted everything")
    assert stripe_api.calls[-1].path == f"/v1/checkout/sessions/{session['id']}/expire"
    assert stripe_api.sessions[session["id"]]["status"] == "expired"  # nobody can pay on it now
    [record] = await payments(bot)
    assert record.user_id is None and record.status == PaymentStatus.OPEN  # until Stripe reports it expired


async def test_a_checkout_paid_after_the_buyers_data_was_erased_is_given_back_at_once(shop, stripe_api):
    """Paid on the page just before the erasure (too late to close it), reported by Stripe just after."""
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    await ann.say("/stop")
    await ann.say("stop and delete my data")
    [open_payment] = await payments(bot)
    assert open_payment.user_id is None and open_payment.status == PaymentStatus.OPEN
    response = await post_event(client, checkout_event(paid))
    assert response.json()["outcome"] == "paid after its buyer's data was erased: given back"
    await bot.settle()
    assert [refund["payment_intent"] for refund in stripe_api.refunds] == [paid["payment_intent"]]
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REFUNDED and payment.charge_reference == paid["payment_intent"]
    assert payment.paid_at is not None and payment.refunded_at is not None
    assert await takings(bot) == [(1, 0, 300, 1, 300)] and await entitlements(bot) == []
    # Stripe's report of that refund, and the checkout reported again, reach no one and give nothing back twice
    later = await post_event(client, refund_event(paid))
    assert later.json()["outcome"] == "about a payment whose buyer's data was erased"
    await post_event(client, checkout_event(paid, "checkout.session.async_payment_succeeded"))
    await bot.settle()
    assert len(stripe_api.refunds) == 1 and (await payments(bot))[0].status == PaymentStatus.REFUNDED


async def test_a_lost_dispute_is_taken_as_a_refund(shop, stripe_api):
    """A chargeback: charge.dispute.created changes nothing; charge.dispute.closed `won` neither; `lost` (the bank
    took the money back) revokes, tells the learner and counts the charge as given back."""
    client, bot, ann, _boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    opened = await post_event(client, dispute_event(stripe_api.dispute(paid["payment_intent"], "needs_response"),
                                                    "charge.dispute.created"))
    assert opened.json()["outcome"] == "not a kind of event Lessonbot acts on"
    await post_event(client, dispute_event(stripe_api.dispute(paid["payment_intent"], "won")))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.PAID and (await entitlements(bot))[0].revoked_at is None
    lost = await post_event(client, dispute_event(stripe_api.dispute(paid["payment_intent"], "lost")))
    assert lost.json()["outcome"] == "forwarded"
    await bot.settle()
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REFUNDED and (await entitlements(bot))[0].revoked_at is not None
    assert ann.channel.texts("ann")[-1].startswith("Your bank took back your payment for “Passwords that hold”")
    assert await takings(bot) == [(1, 0, 300, 1, 300)]
    assert stripe_api.refunds == []  # the bank took it back: nothing for Stripe to refund


async def test_events_about_an_erased_buyers_payment_are_recorded_without_them(shop, stripe_api):
    """Stripe reports the payment made a moment before the erasure, and the refund of it, after the erasure: their
    records keep what happened, not the buyer's e-mail, card name or our reference to them."""
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    await ann.say("/stop")
    [done] = await ann.say("stop and delete my data")
    assert done.startswith("Done: I deleted everything")
    first = await post_event(client, checkout_event(paid))
    assert first.json()["outcome"] == "paid after its buyer's data was erased: given back"
    await post_event(client, refund_event(paid))
    await bot.settle()
    async with bot.db.sessions() as s:
        stored = {e.type: json.dumps(e.payload) for e in await s.scalars(select(PaymentEvent))}
    assert {"checkout.session.completed", "charge.refunded"} <= set(stored)
    leaks = {kind: [word for word in ("example@example.com", "Jenny Rosen", '"user_id"') if word in payload]
             for kind, payload in stored.items()}
    assert not any(leaks.values()), leaks


async def test_the_expiry_of_a_checkout_the_erasure_closed_is_recorded_without_the_buyer(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    await ann.say("/stop")
    await ann.say("stop and delete my data")
    expired = stripe_api.sessions[session["id"]]
    assert expired["status"] == "expired"  # the erasure closed the open checkout page
    await post_event(client, checkout_event(expired, "checkout.session.expired"))
    await bot.settle()
    async with bot.db.sessions() as s:
        [event] = list(await s.scalars(select(PaymentEvent).where(PaymentEvent.type == "checkout.session.expired")))
    assert "example@example.com" not in json.dumps(event.payload) and '"user_id"' not in json.dumps(event.payload)


async def test_a_learner_who_bought_the_course_does_not_use_up_a_code_for_it(shop, stripe_api):
    """Ann bought the course; a code for one learner, sent to her too, is not used up by her: it is Ben's."""
    client, bot, ann, boss = shop
    await bought(client, bot, ann, stripe_api)
    [made] = await boss.say("/admin code passwords-that-hold 1")
    code = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    [answer, *_rest] = await ann.say(f"/redeem {code}")
    assert answer.startswith("You already have “Passwords that hold”"), answer
    ben = Learning(bot, ann.channel, chat="ben")
    await onboard(ben, course=f"Passwords that hold — {PRICE}")
    [accepted, *_rest] = await ben.say(f"/redeem {code}")
    assert accepted.startswith("🎟️ Code accepted"), accepted


def day_in_lisbon(moment) -> str:
    """`moment` as Ann (onboarded in Lisbon, in English) reads a day in a sentence: "4 December 2026"."""
    from zoneinfo import ZoneInfo

    local = moment.astimezone(ZoneInfo("Europe/Lisbon"))
    return f"{local.day} {local:%B} {local.year}"


async def test_a_purchase_a_promotion_made_free_is_taken_back_by_a_refund_of_nothing(settings):
    """A promotion code took the whole price off: Stripe charged nothing (no payment intent). /admin revoke points to
    /admin refund, which takes the purchase back without asking Stripe for anything: the payment refunded with
    nothing given back, the access revoked, the learner told as for any refund, the revenue right."""
    from storage.models import AdminAuditEntry

    async with promotion_shop(settings, PAID) as (stripe_api, client, bot, ann, boss):
        session = await bought_link(ann, bot, stripe_api)
        free = stripe_api.pay(session["id"], discount=300, payment_status="no_payment_required")
        assert free["payment_intent"] is None
        await post_event(client, checkout_event(free))
        await bot.settle()
        [payment] = await payments(bot)
        receipt = f"LB-{payment.id:06d}"
        [revoked] = await boss.say("/admin revoke test:ann passwords-that-hold")
        assert revoked.endswith(f"Their purchase stays: nothing was charged for it (a promotion took the whole price "
                                f"off), and /admin refund {receipt} takes it back without giving anything back, which "
                                "an owner or an admin may do.")

        [refunded] = await boss.say(f"/admin refund {receipt}")
        assert refunded == (f"Refunded payment {receipt}; the access it gave revoked and the learner told. Nothing "
                            "was charged for it (a promotion took the whole price off), so nothing was given back. "
                            "The lessons after the free preview are locked to them again.")
        assert stripe_api.called("/v1/refunds") == []
        assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
        assert [entitlement.revoked_at is not None for entitlement in await entitlements(bot)] == [True]
        assert await takings(bot) == [(1, 0, 0, 1, 0)]
        [listed] = await boss.say("/admin payments")
        assert "passwords-that-hold: 0.00 GBP (1 payment, 1 refunded)" in listed
        await bot.dispatcher.flush(10)
        assert ann.channel.texts("ann")[-1] == (f"Your payment for “Passwords that hold” was refunded (receipt no. "
                                                f"{receipt}). The lessons after the free preview are locked again.")
        [locked] = await ann.say("/next")
        assert locked.startswith("Lesson 2 is part of the full course")
        async with bot.db.sessions() as db:
            audit = [(row.command, row.outcome) for row in await db.scalars(select(AdminAuditEntry)
                                                                              .order_by(AdminAuditEntry.id))]
        assert audit == [("revoke", "ok"), ("refund", "ok"), ("payments", "ok")]


async def test_a_refund_made_in_stripe_says_until_when_a_grant_keeps_the_lessons_open(shop, stripe_api):
    """Ann bought the course, and an admin gave it to her for 30 days as well: the refund takes back the purchase
    only, and she is told her access goes on through the grant until its day, not that the lessons are locked."""
    client, bot, ann, boss = shop
    paid = await bought(client, bot, ann, stripe_api)
    [granted] = await boss.say("/admin grant test:ann passwords-that-hold 30")
    assert granted.startswith("Granted")
    [grant] = [entitlement for entitlement in await entitlements(bot) if entitlement.source == "grant"]
    [payment] = await payments(bot)
    before = len(ann.channel.texts("ann"))
    await post_event(client, refund_event(paid))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told == (f"Your payment for “Passwords that hold” was refunded (receipt no. LB-{payment.id:06d}). Your "
                    f"access to the whole course continues through another grant until "
                    f"{day_in_lisbon(grant.expires_at)}.")
    [lesson] = await ann.say("/next")
    assert not lesson.startswith("Lesson 2 is part of the full course")


async def test_an_admin_refund_while_a_grant_for_good_holds_tells_both_the_lessons_stay_open(shop, stripe_api):
    client, bot, ann, boss = shop
    await bought(client, bot, ann, stripe_api)
    await boss.say("/admin grant test:ann passwords-that-hold")
    [payment] = await payments(bot)
    [refunded] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert refunded == (f"Refunded payment LB-{payment.id:06d}; the access it gave revoked and the learner told. The "
                        "course stays open to them for good through another grant.")
    await bot.dispatcher.flush(10)
    assert ann.channel.texts("ann")[-1] == (f"Your payment for “Passwords that hold” was refunded (receipt no. "
                                            f"LB-{payment.id:06d}). Your access to the whole course continues for "
                                            "good through another grant.")


async def test_a_secret_key_read_with_the_line_break_a_secret_file_leaves_still_opens_checkout(
    settings, stripe_api, monkeypatch
):
    """STRIPE_SECRET_KEY read from a secret file (Docker's, Kubernetes') ends in a line break: it is taken without it,
    as the other platforms' secrets are, not sent in each call's Authorization header, where no checkout could open."""
    from bot.config import load_settings
    from standins.stripe import SECRET_KEY

    monkeypatch.setenv("STRIPE_SECRET_KEY", f"{SECRET_KEY}\n")
    read = load_settings(_env_file=None).stripe_secret_key
    channel = RecordingChannel()
    async with running(stripe_settings(settings, stripe_api.base_url, stripe_secret_key=read),
                       channels=[channel]) as (_client, bot):
        await import_sample(bot, PAID)
        session = await bought_link(Learning(bot, channel), bot, stripe_api)
    assert session["url"].startswith("https://")


async def test_the_confirmation_is_a_receipt_of_the_course_and_the_amount_paid_in_the_buyers_language(shop, stripe_api):
    client, bot, _ann, _boss = shop
    eva = Learning(bot, _ann.channel, chat="eva")
    await eva.say("/language es")
    [offer] = await eva.say("/buy passwords-that-hold")
    assert "3,00 GBP" in offer
    [call] = stripe_api.called("/v1/checkout/sessions")
    before = len(eva.channel.texts("eva"))
    await post_event(client, checkout_event(stripe_api.pay(call.result["id"])))
    await bot.settle()
    confirmed = eva.channel.texts("eva")[before]
    [payment] = await payments(bot)
    assert confirmed.startswith("✅ Pago recibido: «Passwords that hold» es tuyo")
    assert "3,00 GBP" in confirmed and f"LB-{payment.id:06d}" in confirmed


async def test_a_checkout_left_unpaid_until_it_expires_is_told_once_with_a_way_to_buy_again(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    before = len(ann.channel.texts("ann"))
    expired = checkout_event(stripe_api.lapse(session["id"]), "checkout.session.expired")
    await post_event(client, expired)
    await post_event(client, expired)  # delivered again
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told == ("The payment page for “Passwords that hold” (3.00 GBP) has expired, so nothing was charged. "
                    "Send /buy passwords-that-hold when you want a new one.")
    assert (await payments(bot))[0].status == PaymentStatus.EXPIRED and await entitlements(bot) == []


async def test_a_checkout_that_expires_after_the_course_was_bought_on_another_says_nothing(shop, stripe_api):
    client, bot, ann, _boss = shop
    first = await bought_link(ann, bot, stripe_api)
    [_offer] = await ann.say("/buy")
    second = stripe_api.called("/v1/checkout/sessions")[-1].result
    await post_event(client, checkout_event(stripe_api.pay(second["id"])))
    await bot.settle()
    before = len(ann.channel.texts("ann"))
    await post_event(client, checkout_event(stripe_api.lapse(first["id"]), "checkout.session.expired"))
    await bot.settle()
    assert ann.channel.texts("ann")[before:] == []
    assert [payment.status for payment in await payments(bot)] == [PaymentStatus.EXPIRED, PaymentStatus.PAID]


def repriced_copy(tmp_path) -> object:
    """courses/examples/passwords, priced at 4.50 GBP now (a copy under tmp_path)."""
    folder = tmp_path / "repriced"
    shutil.copytree(PAID, folder)
    course_file = folder / "course.yaml"
    course_file.write_text(course_file.read_text().replace("  amount: 3.00\n", "  amount: 4.50\n"))
    return folder


async def test_a_page_paid_after_the_course_was_withdrawn_from_its_buyer_is_given_back(shop, stripe_api):
    """Olga, not in the course, opens a payment page; the course is unpublished (sold to those in it only) while
    Stripe cannot be reached to close her page; she pays on it: the payment goes back, once, and she is told why."""
    client, bot, ann, boss = shop
    olga = Learning(bot, ann.channel, chat="olga")
    await olga.say("/courses")
    [offer] = await olga.say("/buy passwords-that-hold")
    [call] = stripe_api.called("/v1/checkout/sessions")
    assert call.result["url"] in offer
    stripe_api.fail(f"/v1/checkout/sessions/{call.result['id']}/expire", *[StripeError.outage()] * 3)
    [unpublished] = await boss.say("/admin unpublish passwords-that-hold")
    assert "is unpublished" in unpublished and "closed" not in unpublished
    paid = stripe_api.pay(call.result["id"])
    event = checkout_event(paid)
    await post_event(client, event)
    await post_event(client, event)
    await bot.settle()
    assert await entitlements(bot) == []
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REJECTED and "no longer sold" in payment.note
    [refund] = stripe_api.called("/v1/refunds")
    assert refund.params == {"payment_intent": paid["payment_intent"]}
    assert olga.channel.texts("olga")[-1] == (
        f"“Passwords that hold” is no longer sold, so I gave back your payment of {PRICE} and unlocked nothing "
        f"(receipt no. LB-{payment.id:06d}).")


async def test_a_page_paid_after_the_course_was_priced_otherwise_is_given_back(shop, stripe_api, tmp_path):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    await import_sample(bot, repriced_copy(tmp_path))
    before = len(ann.channel.texts("ann"))
    paid = stripe_api.pay(session["id"])
    await post_event(client, checkout_event(paid))
    await bot.settle()
    assert await entitlements(bot) == []
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REJECTED and "sold at 450 GBP once now" in payment.note
    assert len(stripe_api.called("/v1/refunds")) == 1
    [told] = ann.channel.texts("ann")[before:]
    assert told == (f"The price of “Passwords that hold” changed after you were offered it, so I gave back your "
                    f"payment of {PRICE} and unlocked nothing (receipt no. LB-{payment.id:06d}). Send /buy "
                    "passwords-that-hold for the current price.")
    [offer] = await ann.say("/buy")
    assert "4.50 GBP" in offer


async def test_a_page_paid_by_a_learner_in_a_course_unpublished_since_unlocks_it(shop, stripe_api):
    """Unpublished, the course is still sold to those in it: their page paid is honoured."""
    client, bot, ann, boss = shop
    session = await bought_link(ann, bot, stripe_api)
    await boss.say("/admin unpublish passwords-that-hold")
    await post_event(client, checkout_event(stripe_api.pay(session["id"])))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.PAID and len(await entitlements(bot)) == 1
    assert stripe_api.called("/v1/refunds") == []


async def test_unpublishing_closes_the_pages_of_those_not_in_the_course_and_keeps_the_rest(shop, stripe_api):
    """Unpublished, the course is sold to those in it only: the payment page Olga (not in it) opened is closed at
    Stripe at once, Ann's (in it) stays, and Stripe's report of the closed page tells Olga nothing."""
    client, bot, ann, boss = shop
    hers = await bought_link(ann, bot, stripe_api)
    olga = Learning(bot, ann.channel, chat="olga")
    await olga.say("/courses")
    await olga.say("/buy passwords-that-hold")
    theirs = stripe_api.called("/v1/checkout/sessions")[-1].result
    [said] = await boss.say("/admin unpublish passwords-that-hold")
    assert said.endswith("\n1 payment page opened by someone not taking it was closed.")
    assert [call.path for call in stripe_api.calls if call.path.endswith("/expire")] == [
        f"/v1/checkout/sessions/{theirs['id']}/expire"]
    assert stripe_api.sessions[theirs["id"]]["status"] == "expired"
    assert stripe_api.sessions[hers["id"]]["status"] == "open"
    assert [payment.status for payment in await payments(bot)] == [PaymentStatus.OPEN, PaymentStatus.EXPIRED]

    before = len(olga.channel.texts("olga"))
    await post_event(client, checkout_event(dict(stripe_api.sessions[theirs["id"]]), "checkout.session.expired"))
    await bot.settle()
    assert len(olga.channel.texts("olga")) == before
    await post_event(client, checkout_event(stripe_api.pay(hers["id"])))
    await bot.settle()
    assert [payment.status for payment in await payments(bot)] == [PaymentStatus.PAID, PaymentStatus.EXPIRED]


async def test_a_new_person_whose_first_message_is_buy_pays_and_the_course_opens_for_them(shop, stripe_api):
    client, bot, _ann, _boss = shop
    newcomer = Learning(bot, _ann.channel, chat="newcomer")
    [offer] = await newcomer.say("/buy passwords-that-hold")
    [call] = stripe_api.called("/v1/checkout/sessions")
    session = call.result
    assert session["url"] in offer
    [payment] = await payments(bot)
    assert call.params["metadata"]["user_id"] == str(payment.user_id)
    assert call.params["client_reference_id"] == f"u{payment.user_id}-c{payment.course_id}"

    response = await post_event(client, checkout_event(stripe_api.pay(session["id"])))
    assert response.json()["outcome"] == "forwarded"
    await bot.settle()
    assert newcomer.channel.texts("newcomer")[-1].startswith("✅ Payment received: “Passwords that hold” is yours")
    [granted] = await entitlements(bot)
    assert granted.user_id == payment.user_id and granted.reference == f"stripe:{session['id']}"
    assert [p.status for p in await payments(bot)] == [PaymentStatus.PAID.value]


def in_mode(event: dict, live: bool) -> dict:
    """`event` as Stripe sends it in live mode (`live`) or test mode: the event's `livemode` and its object's."""
    event["livemode"] = event["data"]["object"]["livemode"] = live
    return event


async def test_a_live_mode_event_at_a_test_mode_install_is_acknowledged_and_unlocks_nothing(shop, stripe_api, caplog):
    client, bot, ann, _boss = shop
    session = await bought_link(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    live = in_mode(checkout_event(paid), live=True)
    with caplog.at_level(logging.WARNING, logger="bot.payments"):
        response = await post_event(client, live)
    refused = "refused: a live-mode event, and this install's Stripe key is test"
    assert response.status_code == 200 and response.json()["outcome"] == refused
    assert refused in caplog.text
    assert (await post_event(client, live)).json()["outcome"] == "duplicate"
    await bot.settle()
    assert await entitlements(bot) == []
    assert [p.status for p in await payments(bot)] == [PaymentStatus.OPEN.value]
    assert [(e.event_id, e.outcome) for e in await events(bot)] == [(live["id"], refused)]

    # the same payment reported in the key's mode unlocks the course
    response = await post_event(client, in_mode(checkout_event(paid), live=False))
    assert response.json()["outcome"] == "forwarded"
    await bot.settle()
    [granted] = await entitlements(bot)
    assert granted.reference == f"stripe:{session['id']}"


async def test_a_test_mode_event_at_a_live_install_is_acknowledged_and_unlocks_nothing(settings):
    live_key = "sk_live_stand-in_0123456789abcdef"
    channel = RecordingChannel()
    async with StripeStandIn(secret_key=live_key) as stripe_api, running(
        stripe_settings(settings, stripe_api.base_url, stripe_secret_key=live_key), channels=[channel],
    ) as (client, bot):
        await import_sample(bot, PAID)
        ann = Learning(bot, channel)
        paid = stripe_api.pay((await bought_link(ann, bot, stripe_api))["id"])
        response = await post_event(client, in_mode(checkout_event(paid), live=False))
        assert response.status_code == 200
        assert response.json()["outcome"] == "refused: a test-mode event, and this install's Stripe key is live"
        await bot.settle()
        assert await entitlements(bot) == []

        response = await post_event(client, in_mode(checkout_event(paid), live=True))
        assert response.json()["outcome"] == "forwarded"
        await bot.settle()
        assert len(await entitlements(bot)) == 1
