"""A course sold by the month: Stripe Checkout in subscription mode through the real `stripe` client against the
Stripe stand-in, the subscription's and its invoices' events (built from Stripe's own payloads, signed as Stripe signs
them) posted to the real app's webhook, and the learner's conversation through the real pipeline."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from standins.stripe import SECRET_KEY, StripeStandIn
from storage.courses import Course, Entitlement, may_access
from storage.models import OfferedChoice, utcnow
from storage.payments import Payment, PaymentStatus
from storage.personal_data import export_person
from tests.dialogs.learning_support import Learning, answer_until, import_sample, onboard
from tests.dialogs.payment_support import (
    checkout_event,
    dispute_event,
    entitlements,
    events,
    invoice_event,
    monthly_copy,
    payments,
    post_event,
    promotion_shop,
    refund_event,
    stripe_settings,
    subscription_event,
    takings,
)
from tests.support import RecordingChannel, running, standin  # noqa: F401 (the fixture)

MONTHLY = "3.00 GBP a month"
GRACE = timedelta(hours=48)  # SUBSCRIPTION_GRACE_HOURS' default


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture
def monthly_course(tmp_path):
    return monthly_copy(tmp_path)


@pytest.fixture
async def stripe_api():
    async with StripeStandIn() as api:
        yield api


@pytest.fixture
async def shop(settings, stripe_api, monthly_course):
    channel = RecordingChannel()
    async with running(stripe_settings(settings, stripe_api.base_url, admins=("test:boss",)),
                       channels=[channel]) as (client, bot):
        await import_sample(bot, monthly_course)
        yield client, bot, Learning(bot, channel), Learning(bot, channel, chat="boss")


async def subscribe(t: Learning, bot, stripe_api) -> dict:
    """Onboard, take the free lesson, press "Buy": the checkout session offered."""
    await onboard(t, course=f"Passwords that hold — {MONTHLY}")
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉 Lesson done")
    [locked] = await t.press("More now")
    assert locked.startswith("Lesson 2 is part of the full course")
    [offer] = await t.press(f"Buy — {MONTHLY}")
    [call] = stripe_api.called("/v1/checkout/sessions")
    assert call.result["url"] in offer and offer.startswith(f"To subscribe to “Passwords that hold” ({MONTHLY}, cancel")
    return call.result


async def subscribed(client, bot, t: Learning, stripe_api) -> tuple[dict, dict]:
    """Subscribed and confirmed: the session as paid, and the subscription."""
    session = await subscribe(t, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    subscription = stripe_api.subscription(paid["subscription"])
    await post_event(client, checkout_event(paid))
    await post_event(client, subscription_event(subscription, "customer.subscription.created"))
    await bot.settle()
    return paid, subscription


async def expiry(bot):
    [granted] = await entitlements(bot)
    return granted.expires_at


async def test_a_monthly_course_is_sold_as_a_subscription_whose_access_follows_the_period(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    [call] = stripe_api.called("/v1/checkout/sessions")
    user_id = (await payments(bot))[0].user_id
    assert call.params["mode"] == "subscription" and "payment_intent_data" not in call.params
    assert call.params["line_items"][0]["price_data"]["recurring"] == {"interval": "month"}
    assert call.params["subscription_data"]["metadata"]["user_id"] == str(user_id)
    assert call.params["subscription_data"]["metadata"]["period"] == "month"

    before = len(ann.channel.texts("ann"))
    paid = stripe_api.pay(session["id"])
    await post_event(client, checkout_event(paid))
    await bot.settle()
    confirmed, lesson = ann.channel.texts("ann")[before:]
    assert confirmed.startswith("✅ Payment received: you're subscribed to “Passwords that hold”")
    assert lesson.startswith("📘 Lesson 2 of 3")
    [payment] = await payments(bot)
    assert f"You paid 3.00 GBP; receipt no. LB-{payment.id:06d}" in confirmed
    assert payment.subscription_reference == paid["subscription"] and payment.period == "month"
    assert await expiry(bot) is not None  # a month from now until Stripe says when the period ends

    subscription = stripe_api.subscription(paid["subscription"])
    period_end = at(subscription["items"]["data"][0]["current_period_end"])
    await post_event(client, subscription_event(subscription, "customer.subscription.created"))
    await bot.settle()
    assert await expiry(bot) == period_end + GRACE
    [listing] = await ann.say("/purchases")
    renews = period_end.astimezone(ZoneInfo("Europe/Lisbon"))  # her day, in words (not 2027-01-04 in UTC)
    assert f"Passwords that hold — {MONTHLY}, since " in listing
    assert f"renews on {renews.day} {renews:%B} {renews.year}." in listing
    [courses] = await ann.say("/courses")
    assert "• Passwords that hold — yours" in courses


async def test_events_before_the_checkouts_completion_are_kept_and_applied_when_it_comes(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    subscription = stripe_api.subscription(paid["subscription"])
    invoice = stripe_api.invoices[paid["invoice"]]
    before = len(ann.channel.texts("ann"))
    for early in (subscription_event(subscription, "customer.subscription.created"), invoice_event(invoice)):
        response = await post_event(client, early)
        assert response.json()["outcome"] == "forwarded"  # matched by the metadata we gave the subscription
    await bot.settle()
    assert await entitlements(bot) == [] and ann.channel.texts("ann")[before:] == []

    await post_event(client, checkout_event(paid))
    await bot.settle()
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.PAID
    assert payment.charge_reference == invoice["payments"]["data"][0]["payment"]["payment_intent"]
    assert await expiry(bot) == at(subscription["items"]["data"][0]["current_period_end"]) + GRACE
    assert ann.channel.texts("ann")[before].startswith("✅ Payment received")


async def test_a_paid_renewal_moves_the_end_of_access_without_a_word(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    await post_event(client, invoice_event(stripe_api.invoices[paid["invoice"]]))  # the first: the purchase's own
    first_end = await expiry(bot)
    before = len(ann.channel.texts("ann"))
    renewal = stripe_api.renew(paid["subscription"])
    await post_event(client, invoice_event(renewal))
    await post_event(client, invoice_event(renewal))  # the same invoice in another event
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    renewed_end = await expiry(bot)
    assert renewed_end == at(renewal["lines"]["data"][0]["period"]["end"]) + GRACE and renewed_end > first_end
    assert ann.channel.texts("ann")[before:] == []
    [payment] = await payments(bot)
    assert payment.charge_reference == renewal["payments"]["data"][0]["payment"]["payment_intent"]
    assert await takings(bot) == [(1, 1, 600, 0, 0)]  # the purchase and its renewal, each counted once


async def test_a_subscription_lapses_the_learner_is_told_once_and_the_lessons_lock(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    before = len(ann.channel.texts("ann"))
    failed = stripe_api.renew(paid["subscription"], paid=False)
    await post_event(client, invoice_event(failed, "invoice.payment_failed"))
    await bot.settle()
    [warned] = ann.channel.texts("ann")[before:]
    assert warned.startswith("Your monthly payment for this course did not go through. Stripe will try again")

    now = int(datetime.now(UTC).timestamp())
    stripe_api.subscriptions[paid["subscription"]].update(status="canceled", ended_at=now)
    ended = subscription_event(stripe_api.subscription(paid["subscription"]), "customer.subscription.deleted")
    also_ended = subscription_event(stripe_api.subscription(paid["subscription"]), status="canceled")
    responses = await asyncio.gather(*[post_event(client, ended) for _ in range(20)], post_event(client, also_ended))
    assert [r.status_code for r in responses] == [200] * 21
    await bot.settle()
    told = ann.channel.texts("ann")[before + 1:]
    assert len(told) == 1 and told[0].startswith("Your subscription to “Passwords that hold” has ended")
    assert await expiry(bot) <= datetime.now(UTC)
    [locked] = await ann.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")
    [listing] = await ann.say("/purchases")
    assert f"{MONTHLY}, since " in listing and ", ended." in listing
    # A stale "active" reported after the end changes nothing.
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"]), status="active"))
    await bot.settle()
    assert await expiry(bot) <= datetime.now(UTC)


async def test_without_a_renewal_the_access_ends_after_the_grace(shop, stripe_api):
    client, bot, ann, _boss = shop
    _paid, subscription = await subscribed(client, bot, ann, stripe_api)
    period_end = at(subscription["items"]["data"][0]["current_period_end"])
    user_id = (await payments(bot))[0].user_id
    async with bot.db.sessions() as session:
        course = await session.scalar(select(Course))
        assert await may_access(session, user_id, course, 2, now=period_end + GRACE - timedelta(minutes=1))
        assert not await may_access(session, user_id, course, 2, now=period_end + GRACE + timedelta(minutes=1))


async def test_an_admin_refund_refunds_the_latest_invoice_and_cancels_the_subscription(shop, stripe_api):
    client, bot, ann, boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    assert payment.charge_reference is None  # the first invoice's event never came: asked of Stripe instead
    [listed] = await boss.say("/admin payments")
    assert f"LB-{payment.id:06d} · paid · {MONTHLY} · passwords-that-hold" in listed
    assert "passwords-that-hold: 3.00 GBP (1 payment, 0 refunded)" in listed
    [refunded] = await boss.say(f"/admin refund lb {payment.id:06d}")
    assert refunded.startswith(f"Refunded payment LB-{payment.id:06d}")
    invoice = stripe_api.invoices[paid["invoice"]]
    assert [r["payment_intent"] for r in stripe_api.refunds] == [
        invoice["payments"]["data"][0]["payment"]["payment_intent"]]
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"
    await bot.dispatcher.flush(10)
    told = len(ann.channel.texts("ann"))
    assert ann.channel.texts("ann")[-1].startswith("Your payment for “Passwords that hold” was refunded")
    # Stripe then reports the end of the subscription: settled already, nothing more is said.
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"]),
                                                "customer.subscription.deleted"))
    await bot.settle()
    assert len(ann.channel.texts("ann")) == told
    assert (await entitlements(bot))[0].revoked_at is not None


async def test_a_refund_made_in_stripe_cancels_the_subscription(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    invoice = stripe_api.invoices[paid["invoice"]]
    await post_event(client, invoice_event(invoice))
    await bot.settle()
    intent = invoice["payments"]["data"][0]["payment"]["payment_intent"]
    await post_event(client, refund_event(paid | {"amount_total": 300}, payment_intent=intent))
    await bot.settle()
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert (await entitlements(bot))[0].revoked_at is not None
    assert ann.channel.texts("ann")[-1].startswith("Your payment for “Passwords that hold” was refunded")


async def two_months_paid(client, bot, ann, stripe_api) -> tuple[dict, dict]:
    """Ann subscribed, her first invoice reported, then a renewal paid: (the completed checkout, the renewal)."""
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    await post_event(client, invoice_event(stripe_api.invoices[paid["invoice"]]))
    renewal = stripe_api.renew(paid["subscription"])
    await post_event(client, invoice_event(renewal))
    await bot.settle()
    return paid, renewal


async def refunds_exported(bot, user_id: int) -> list[int | None]:
    """What the learner's data export says was given back of each charge of their first payment."""
    async with bot.db.sessions() as session:
        exported = await export_person(session, user_id, now=utcnow())
    return [charge["refunded_minor"] for charge in exported["payments"][0]["charges"]]


@pytest.mark.parametrize("given_back", ["refunded in the Dashboard", "a dispute lost"])
async def test_the_first_month_given_back_after_a_renewal_is_found_and_counted(shop, stripe_api, given_back):
    """A month before the latest renewal is refunded in Stripe, or its dispute lost: the event names what paid
    that month, no longer the payment's latest charge. It is found all the same: access revoked, the subscription
    cancelled, the learner told, and the revenue gives back that month's 3.00 GBP (not the latest one's)."""
    client, bot, ann, _boss = shop
    paid, _renewal = await two_months_paid(client, bot, ann, stripe_api)
    assert await takings(bot) == [(1, 1, 600, 0, 0)]
    first = stripe_api.paid_by(paid["invoice"])
    event = (refund_event(paid | {"amount_total": 300}, payment_intent=first) if given_back.startswith("refunded")
             else dispute_event(stripe_api.dispute(first, "lost")))
    assert (await post_event(client, event)).json()["outcome"] == "forwarded"
    await bot.settle()
    assert await takings(bot) == [(1, 1, 600, 1, 300)]
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert (await entitlements(bot))[0].revoked_at is not None
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"
    assert ann.channel.texts("ann")[-1].startswith(("Your payment for “Passwords that hold” was refunded",
                                                    "Your bank took back your payment for “Passwords that hold”"))


async def test_each_month_given_back_counts_though_the_payment_was_refunded_already(shop, stripe_api):
    """Both months of a subscription refunded in the Dashboard, one after the other: the first refund ends the
    payment (access, subscription), the second finds it refunded already and still counts its own month."""
    client, bot, ann, _boss = shop
    paid, renewal = await two_months_paid(client, bot, ann, stripe_api)
    for month in (paid["invoice"], renewal["id"]):
        refunded = refund_event(paid | {"amount_total": 300}, payment_intent=stripe_api.paid_by(month))
        assert (await post_event(client, refunded)).json()["outcome"] == "forwarded"
        await bot.settle()
    assert await takings(bot) == [(1, 1, 600, 2, 600)]
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REFUNDED
    assert await refunds_exported(bot, payment.user_id) == [300, 300]


async def test_a_partial_refund_of_an_earlier_month_is_counted_and_exported(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, _renewal = await two_months_paid(client, bot, ann, stripe_api)
    partial = refund_event(paid | {"amount_total": 300}, payment_intent=stripe_api.paid_by(paid["invoice"]))
    partial["data"]["object"].update(amount_refunded=100, refunded=False)
    await post_event(client, partial)
    await bot.settle()
    assert await takings(bot) == [(1, 1, 600, 0, 100)]
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.PAID
    assert await refunds_exported(bot, payment.user_id) == [100, None]


async def test_an_admin_refund_a_renewal_overtakes_gives_back_the_month_before_only(shop, stripe_api):
    """Stripe charges the next month while it answers the admin's refund of this one: the refund gave back the month
    before the renewal, so the admin is told the month just paid for stays open, and the revenue counts the month
    given back, not the one just paid."""
    client, bot, ann, boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    await post_event(client, invoice_event(stripe_api.invoices[paid["invoice"]]))
    await bot.settle()
    [payment] = await payments(bot)
    renewal: dict = {}

    async def renewed_meanwhile(_refund: dict) -> None:
        renewal.update(stripe_api.renew(paid["subscription"]))
        await post_event(client, invoice_event(renewal))
        async with asyncio.timeout(10):
            while (await payments(bot))[0].charge_reference != stripe_api.paid_by(renewal["id"]):
                await asyncio.sleep(0.02)

    stripe_api.while_refunding = renewed_meanwhile
    [said] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert said.startswith(f"Payment LB-{payment.id:06d} renewed while it was being refunded")
    assert [r["payment_intent"] for r in stripe_api.refunds] == [stripe_api.paid_by(paid["invoice"])]
    assert await takings(bot) == [(1, 1, 600, 1, 300)]
    assert (await payments(bot))[0].status == PaymentStatus.PAID


async def test_a_renewal_charged_after_a_refund_whose_cancellation_failed_is_given_back(shop, stripe_api):
    """An admin refunds a subscription while Stripe cannot cancel it (logged for the admin): a month on, Stripe
    charges the learner again for a course that stays locked. That charge is given back at once, the subscription
    cancelled again and the learner told, once however often the invoice is reported; the revenue shows it taken
    and given back."""
    client, bot, ann, boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    await post_event(client, invoice_event(stripe_api.invoices[paid["invoice"]]))
    await bot.settle()
    [payment] = await payments(bot)
    subscription = paid["subscription"]
    hidden = stripe_api.subscriptions.pop(subscription)  # the cancellation finds nothing (404)
    [refunded] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert refunded.startswith("Refunded payment")
    stripe_api.subscriptions[subscription] = hidden
    assert hidden["status"] == "active"
    await bot.dispatcher.flush(10)
    told = len(ann.channel.texts("ann"))

    renewal = stripe_api.renew(subscription)
    for _ in range(2):  # invoice.paid, then the same invoice reported again under another event id
        assert (await post_event(client, invoice_event(renewal))).json()["outcome"] == "forwarded"
        await bot.settle()
    await bot.dispatcher.flush(10)
    assert [r["payment_intent"] for r in stripe_api.refunds][-1] == stripe_api.paid_by(renewal["id"])
    assert len(stripe_api.refunds) == 2
    assert stripe_api.subscriptions[subscription]["status"] == "canceled"
    assert ann.channel.texts("ann")[told:] == [
        "Stripe charged you for “Passwords that hold”, whose subscription had already ended here, so I gave the "
        "payment back and cancelled it. Send /buy to subscribe again."]
    assert await takings(bot) == [(1, 1, 600, 2, 600)]
    [locked] = await ann.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")


@pytest.mark.parametrize("changes", [{"currency": "usd"}, {"subtotal": 100, "amount_paid": 100}],
                         ids=["currency", "amount"])
async def test_an_invoice_that_does_not_match_the_offer_extends_nothing(shop, stripe_api, changes):
    client, bot, ann, _boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    first_end = await expiry(bot)
    await post_event(client, invoice_event(stripe_api.renew(paid["subscription"]), **changes))
    await bot.settle()
    assert await expiry(bot) == first_end


async def test_the_same_completion_twenty_times_at_once_subscribes_once(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    event = checkout_event(stripe_api.pay(session["id"]))
    responses = await asyncio.gather(*[post_event(client, event) for _ in range(20)])
    assert [r.status_code for r in responses] == [200] * 20
    await bot.settle()
    assert len(await entitlements(bot)) == 1 and len(await events(bot)) == 1
    assert sum(text.startswith("✅ Payment received") for text in ann.channel.texts("ann")) == 1


async def test_an_event_about_a_subscription_of_no_one_here_is_recorded_and_acknowledged(shop, stripe_api):
    client, _bot, _ann, _boss = shop
    stranger = {"id": "sub_not_ours", "status": "active", "customer": "cus_x", "currency": "usd", "metadata": {},
                "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "ended_at": None,
                "latest_invoice": None, "start_date": 1, "created": 1,
                "items": {"data": [{"id": "si_x", "current_period_start": 1, "current_period_end": 2}]}}
    response = await post_event(client, subscription_event(stranger))
    assert response.status_code == 200 and response.json()["outcome"] == "no payment of ours matches it"


async def test_on_telegram_without_a_stars_rate_a_monthly_course_is_sold_through_stripe_behind_a_url_button(
        settings, standin, stripe_api, monthly_course):
    from standins.telegram import TOKEN
    from tests.dialogs.test_payments_stars import onboarded
    from tests.dialogs.test_telegram_transcript import CHAT, SECRET

    configured = stripe_settings(settings, stripe_api.base_url, **{
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": SECRET, "telegram_api_base_url": standin.base_url,
        "web_chat_enabled": False})  # a course priced in GBP, and no rate to turn it into Stars
    async with running(configured) as (client, bot):
        await import_sample(bot, monthly_course)
        marta = await onboarded(client, standin, course=f"Passwords that hold — {MONTHLY}")
        [offer] = await marta.say("/buy")
        assert offer.startswith(f"To subscribe to “Passwords that hold” ({MONTHLY}")
        assert standin.called("sendInvoice") == standin.called("createInvoiceLink") == []  # no Stars
        [call] = stripe_api.called("/v1/checkout/sessions")
        sent = [c for c in standin.called("sendMessage") if c.params.get("chat_id") == str(CHAT)][-1]
        [[button]] = sent.reply_markup["inline_keyboard"]
        assert button == {"text": f"Pay {MONTHLY}", "url": call.result["url"]}


async def test_an_unpaid_renewal_opens_nothing_more_whatever_the_subscription_reports(shop, stripe_api):
    """Stripe moves a subscription's period at a renewal whether or not its invoice is paid: only a paid invoice
    moves the end of access."""
    client, bot, ann, _boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    first_end = await expiry(bot)
    failed = stripe_api.renew(paid["subscription"], paid=False)
    await post_event(client, invoice_event(failed, "invoice.payment_failed"))
    stripe_api.subscriptions[paid["subscription"]].update(status="past_due")
    for status in ("past_due", "active"):
        await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"]), status=status))
    await bot.settle()
    assert await expiry(bot) == first_end
    assert ann.channel.texts("ann")[-1].startswith("Your monthly payment for this course did not go through")

    await post_event(client, invoice_event(failed, "invoice.paid", status="paid", amount_paid=300))
    await bot.settle()
    assert await expiry(bot) == at(failed["lines"]["data"][0]["period"]["end"]) + GRACE > first_end


async def test_a_subscription_ended_before_its_checkout_completed_opens_nothing(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    now = int(datetime.now(UTC).timestamp())
    stripe_api.subscriptions[paid["subscription"]].update(status="canceled", ended_at=now)
    ended = subscription_event(stripe_api.subscription(paid["subscription"]), "customer.subscription.deleted")
    await post_event(client, ended)
    await bot.settle()
    before = len(ann.channel.texts("ann"))
    await post_event(client, checkout_event(paid))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told.startswith("Your subscription to “Passwords that hold” has ended")
    assert (await payments(bot))[0].status == PaymentStatus.PAID  # the first month was charged: a sale on record
    assert await expiry(bot) <= datetime.now(UTC)
    [locked] = await ann.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")


async def test_a_subscription_ended_before_its_checkout_completed_opens_nothing_after_a_link_too(shop, stripe_api):
    """Ann opens the checkout on her phone, then links the phone to her lessons on the web (the phone's offer goes
    to the web's learner, still naming the phone's in Stripe). Stripe ends the subscription before the checkout's
    completion comes: the end is kept for that offer all the same, and the completion opens nothing."""
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    web = Learning(bot, ann.channel, chat="ann-web")
    await onboard(web, course=f"Passwords that hold — {MONTHLY}")
    [told] = await web.say("/link")
    [linked] = await ann.say(f"/link {told.split('Your link code is ')[1][:11]}")
    assert linked.startswith("Linked!")
    paid = stripe_api.pay(session["id"])
    now = int(datetime.now(UTC).timestamp())
    stripe_api.subscriptions[paid["subscription"]].update(status="canceled", ended_at=now)
    ended = subscription_event(stripe_api.subscription(paid["subscription"]), "customer.subscription.deleted")
    assert (await post_event(client, ended)).json()["outcome"] == "forwarded"
    await bot.settle()
    before = len(ann.channel.texts("ann"))
    await post_event(client, checkout_event(paid))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert told.startswith("Your subscription to “Passwords that hold” has ended")
    assert await expiry(bot) <= datetime.now(UTC)


async def test_a_subscriptions_first_invoice_refunded_before_its_checkout_completed_unlocks_nothing(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    invoice = stripe_api.invoices[paid["invoice"]]
    await post_event(client, invoice_event(invoice))  # carries the payment intent to our offer
    await bot.settle()
    intent = invoice["payments"]["data"][0]["payment"]["payment_intent"]
    await post_event(client, refund_event(paid | {"amount_total": 300}, payment_intent=intent))
    await bot.settle()
    await post_event(client, checkout_event(paid))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED and await entitlements(bot) == []
    assert ann.channel.texts("ann")[-1].startswith("Your payment for “Passwords that hold” was refunded before it")
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"  # not charged again for nothing


async def test_a_refund_kept_on_the_newer_of_two_offers_reaches_the_checkout_that_completes(shop, stripe_api):
    """Two checkout pages open; the first is paid. Its invoice and the invoice's refund are matched by the learner's
    metadata to the newest offer; the completion of the first takes what they left there, and opens nothing."""
    client, bot, ann, _boss = shop
    first = await subscribe(ann, bot, stripe_api)
    await ann.say("/buy")
    assert len(stripe_api.called("/v1/checkout/sessions")) == 2
    paid = stripe_api.pay(first["id"])
    invoice = stripe_api.invoices[paid["invoice"]]
    await post_event(client, invoice_event(invoice))
    await bot.settle()
    intent = invoice["payments"]["data"][0]["payment"]["payment_intent"]
    await post_event(client, refund_event(paid | {"amount_total": 300}, payment_intent=intent))
    await post_event(client, checkout_event(paid))
    await bot.settle()
    assert await entitlements(bot) == []
    assert PaymentStatus.REFUNDED in {payment.status for payment in await payments(bot)}
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"


async def test_a_refund_made_in_stripe_is_seen_though_invoice_events_name_no_payment(shop, stripe_api):
    """Stripe's invoice.paid carries neither `payment_intent` (API 2025-03-31 on) nor `payments` (includable, never in
    a webhook): what paid it is asked of Stripe (the invoice, its payments expanded), so a Dashboard refund of that
    payment intent is matched."""
    client, bot, ann, _boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    delivered = invoice_event(stripe_api.invoices[paid["invoice"]])
    assert "payments" not in delivered["data"]["object"] and "payment_intent" not in delivered["data"]["object"]
    await post_event(client, delivered)
    await bot.settle()
    [asked] = stripe_api.called(f"/v1/invoices/{paid['invoice']}")
    assert asked.params == {"expand": ["payments"]} and asked.result["payments"]["data"]
    intent = stripe_api.paid_by(paid["invoice"])
    assert (await payments(bot))[0].charge_reference == intent

    response = await post_event(client, refund_event(paid | {"amount_total": 300}, payment_intent=intent))
    assert response.json()["outcome"] == "forwarded"
    await bot.settle()
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REFUNDED and (await entitlements(bot))[0].revoked_at is not None
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"
    assert await takings(bot) == [(1, 0, 300, 1, 300)]


async def test_the_stand_in_shows_an_invoices_payments_only_where_asked(stripe_api):
    import stripe

    api = stripe.StripeClient(SECRET_KEY, base_addresses={"api": stripe_api.base_url})
    session = await api.v1.checkout.sessions.create_async(params={
        "mode": "subscription", "success_url": "https://example.test/done", "subscription_data": {"metadata": {}},
        "line_items": [{"quantity": 1, "price_data": {"currency": "gbp", "unit_amount": 300,
                                                      "product_data": {"name": "x"},
                                                      "recurring": {"interval": "month"}}}]})
    invoice = stripe_api.pay(session.id)["invoice"]
    assert "payments" not in (await api.v1.invoices.retrieve_async(invoice)).to_dict()
    expanded = (await api.v1.invoices.retrieve_async(invoice, params={"expand": ["payments"]})).to_dict()
    [payment] = expanded["payments"]["data"]
    assert payment["object"] == "invoice_payment" and payment["status"] == "paid"
    assert payment["payment"] == {"type": "payment_intent", "payment_intent": stripe_api.paid_by(invoice)}


async def test_an_admin_refund_during_a_failed_renewal_gives_back_the_month_paid(shop, stripe_api):
    """Past due (a renewal failed, Stripe retrying, the learner within the grace): the refund names the newest paid
    invoice's payment, not the failed attempt's (Stripe would refuse it: it charged nothing)."""
    client, bot, ann, boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    failed = stripe_api.renew(paid["subscription"], paid=False)
    await post_event(client, invoice_event(failed, "invoice.payment_failed"))
    await bot.settle()
    [payment] = await payments(bot)
    assert payment.subscription_status == "past_due" and payment.charge_reference is None
    [refunded] = await boss.say(f"/admin refund LB-{payment.id:06d}")
    assert refunded.startswith("Refunded payment LB-")
    assert [refund["payment_intent"] for refund in stripe_api.refunds] == [stripe_api.paid_by(paid["invoice"])]
    assert stripe_api.called("/v1/invoices")[-1].params["status"] == "paid"
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"


async def test_an_admin_revoke_leaves_a_purchase_to_a_refund(shop, stripe_api):
    """/admin revoke takes back what an admin or a code gave; a purchase (here a subscription, still billing) stays,
    and the admin is told it is taken back with /admin refund."""
    client, bot, ann, boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    [revoked] = await boss.say("/admin revoke test:ann passwords-that-hold")
    assert revoked == (f"Revoked 0 entitlements to “Passwords that hold” from learner {payment.user_id}.\nTheir "
                       f"purchase stays: a purchase is taken back with /admin refund LB-{payment.id:06d}, which an "
                       "owner or an admin may do.")
    [purchase] = await entitlements(bot)
    assert purchase.revoked_at is None and stripe_api.subscriptions[paid["subscription"]]["status"] == "active"
    async with bot.db.sessions() as session:
        course = await session.scalar(select(Course).where(Course.slug == "passwords-that-hold"))
        assert await may_access(session, payment.user_id, course, 2)


async def test_a_subscription_paid_after_the_buyers_data_was_erased_is_cancelled_and_given_back(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])  # just before the erasure: too late to close the page, reported after it
    await ann.say("/stop")
    await ann.say("stop and delete my data")
    response = await post_event(client, checkout_event(paid))
    assert response.json()["outcome"] == "paid after its buyer's data was erased: given back"
    await bot.settle()
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"
    assert [refund["payment_intent"] for refund in stripe_api.refunds] == [stripe_api.paid_by(paid["invoice"])]
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REFUNDED and await entitlements(bot) == []
    assert await takings(bot) == [(1, 0, 300, 1, 300)]


async def test_the_refund_of_each_month_keeps_no_trace_of_a_buyer_who_then_deleted_their_data(shop, stripe_api):
    """Part of each month of Ann's subscription was given back in Stripe, each refund naming what paid that month
    (the card holder's name with it); then Ann deletes her data. The events kept of her payment keep no name of
    hers, whichever month they are about."""
    import json

    client, bot, ann, _boss = shop
    paid, renewal = await two_months_paid(client, bot, ann, stripe_api)
    for month in (paid["invoice"], renewal["id"]):
        partial = refund_event(paid | {"amount_total": 300}, payment_intent=stripe_api.paid_by(month))
        partial["data"]["object"].update(amount_refunded=100, refunded=False)
        assert (await post_event(client, partial)).json()["outcome"] == "forwarded"
        await bot.settle()
    await ann.say("/stop")
    [done] = await ann.say("stop and delete my data")
    assert done.startswith("Done: I deleted everything")
    kept = [(event.type, json.dumps(event.payload)) for event in await events(bot)]
    assert [kind for kind, _payload in kept].count("charge.refunded") == 2
    assert [kind for kind, payload in kept if "Jenny Rosen" in payload] == []


async def test_a_refund_in_stripe_after_two_offers_revokes_the_subscription_that_was_paid(shop, stripe_api):
    """Two checkout pages open; the first is paid. Its first invoice comes before the checkout's completion (matched
    by its metadata to the newer offer), then the completion, which takes what the invoice left there: the charge
    too, so a refund of it in the Dashboard finds the paid offer (not the open one) and ends its access."""
    client, bot, ann, _boss = shop
    first = await subscribe(ann, bot, stripe_api)
    await ann.say("/buy")
    paid = stripe_api.pay(first["id"])
    invoice = stripe_api.invoices[paid["invoice"]]
    await post_event(client, invoice_event(invoice))
    await bot.settle()
    await post_event(client, checkout_event(paid))
    await bot.settle()
    [granted] = await entitlements(bot)
    assert granted.revoked_at is None
    intent = invoice["payments"]["data"][0]["payment"]["payment_intent"]
    await post_event(client, refund_event(paid | {"amount_total": 300}, payment_intent=intent))
    await bot.settle()
    statuses = [(p.status, p.charge_reference) for p in await payments(bot)]
    [granted] = await entitlements(bot)
    assert granted.revoked_at is not None, statuses
    assert stripe_api.subscriptions[paid["subscription"]]["status"] == "canceled"
    assert PaymentStatus.REFUNDED in {status for status, _charge in statuses}


async def test_a_subscription_a_promotion_made_free_for_its_first_month_is_taken_back_and_cancelled(settings,
                                                                                                    monthly_course):
    """A promotion code took the whole first month off: its invoice is paid with no payment. /admin refund gives back
    nothing (nothing to ask Stripe to refund), cancels the subscription in Stripe and takes the access back."""
    async with promotion_shop(settings, monthly_course) as (stripe_api, client, bot, ann, boss):
        session = await subscribe(ann, bot, stripe_api)
        free = stripe_api.pay(session["id"], discount=300, payment_status="no_payment_required")
        await post_event(client, checkout_event(free))
        await post_event(client, invoice_event(stripe_api.invoices[free["invoice"]]))
        await bot.settle()
        [payment] = await payments(bot)
        assert payment.status == PaymentStatus.PAID and payment.charge_reference is None
        [refunded] = await boss.say(f"/admin refund LB-{payment.id:06d}")
        assert refunded.startswith(f"Refunded payment LB-{payment.id:06d}; the access it gave revoked")
        assert "Nothing was charged for it" in refunded
        assert stripe_api.refunds == []
        assert stripe_api.subscriptions[free["subscription"]]["status"] == "canceled"
        assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
        assert (await entitlements(bot))[0].revoked_at is not None
        assert await takings(bot) == [(1, 0, 0, 1, 0)]


async def test_a_subscription_that_ends_while_a_grant_holds_says_the_lessons_stay_open(shop, stripe_api):
    client, bot, ann, boss = shop
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    await boss.say("/admin grant test:ann passwords-that-hold")
    before = len(ann.channel.texts("ann"))
    now = int(datetime.now(UTC).timestamp())
    stripe_api.subscriptions[paid["subscription"]].update(status="canceled", ended_at=now)
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"]),
                                                "customer.subscription.deleted"))
    await bot.settle()
    assert ann.channel.texts("ann")[before:] == [
        "Your subscription to “Passwords that hold” has ended. Your access to the whole course continues for good "
        "through another grant. Send /buy passwords-that-hold to subscribe again; your place is kept."]


# Cancelling the renewal -----------------------------------------------------------------------------------------------


def said(moment: datetime, zone: str = "Europe/Lisbon") -> str:
    """A day as Ann is told it: in her zone, in words."""
    day = moment.astimezone(ZoneInfo(zone))
    return f"{day.day} {day:%B} {day.year}"


async def renewing(client, bot, ann: Learning, stripe_api) -> tuple[dict, datetime]:
    """Ann subscribed, Stripe's period reported: the completed checkout, and the end of the period paid for."""
    paid, subscription = await subscribed(client, bot, ann, stripe_api)
    return paid, at(subscription["items"]["data"][0]["current_period_end"])


async def test_a_learner_cancels_the_renewal_keeps_the_month_paid_for_and_is_locked_when_it_ends(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, period_end = await renewing(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    receipt = f"LB-{payment.id:06d}"
    [listing] = await ann.say("/purchases")
    assert f"{MONTHLY}, since {said(payment.paid_at)}, renews on {said(period_end)}. Receipt no. {receipt}" in listing
    assert ann.labels() == ["Cancel renewal"]

    [asked] = await ann.press("Cancel renewal")
    assert asked == (f"Cancel the renewal of “Passwords that hold”? Nothing more will be charged, and your lessons "
                     f"stay open until {said(period_end)}.")
    assert ann.labels() == ["Yes, cancel the renewal", "Keep it"]
    assert stripe_api.called(f"/v1/subscriptions/{paid['subscription']}") == []  # nothing asked before the yes
    [done] = await ann.press("Yes, cancel the renewal")
    assert done == (f"Done: “Passwords that hold” will not renew, and nothing more will be charged. Your lessons stay "
                    f"open until {said(period_end)}.")
    [call] = stripe_api.called(f"/v1/subscriptions/{paid['subscription']}")
    assert call.params == {"cancel_at_period_end": "true"}  # at the period's end: not DELETE, which ends it now
    subscription = stripe_api.subscription(paid["subscription"])
    assert subscription["status"] == "active" and subscription["cancel_at_period_end"] is True
    assert subscription["cancel_at"] == int(period_end.timestamp())
    [payment] = await payments(bot)
    cancelled_at = payment.renewal_cancelled_at
    assert cancelled_at is not None and await expiry(bot) == period_end + GRACE  # the month paid for stays open

    # Stripe reports the change it made: recorded already, kept as it was.
    await post_event(client, subscription_event(subscription))
    await bot.settle()
    assert (await payments(bot))[0].renewal_cancelled_at == cancelled_at
    [listing] = await ann.say("/purchases")
    assert (f"{MONTHLY}, since {said(payment.paid_at)}, ends on {said(period_end)} (renewal cancelled). Receipt no. "
            f"{receipt}") in listing
    assert ann.labels() == []  # not offered twice
    [again] = await ann.press("Yes, cancel the renewal")  # the old confirmation, pressed once more
    assert again == (f"The renewal of “Passwords that hold” is already cancelled: nothing more will be charged, and "
                     f"your lessons stay open until {said(period_end)}.")
    [typed] = await ann.say("/purchases cancel")
    assert typed == "You have no subscription that renews. Send /purchases to see what you bought."
    assert len(stripe_api.called(f"/v1/subscriptions/{paid['subscription']}")) == 1
    [lesson] = await ann.say("/next")
    assert not lesson.startswith("Lesson 2 is part of the full course")

    # The period ends: Stripe ends the subscription, and the lessons lock with what any end says.
    ended = stripe_api.period_ends(paid["subscription"])
    before = len(ann.channel.texts("ann"))
    await post_event(client, subscription_event(ended, "customer.subscription.deleted"))
    await bot.settle()
    assert ann.channel.texts("ann")[before:] == [
        "Your subscription to “Passwords that hold” has ended. The lessons after the free preview are locked again. "
        "Send /buy passwords-that-hold to subscribe again; your place is kept."]
    [locked] = await ann.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")
    [listing] = await ann.say("/purchases")
    assert f"{MONTHLY}, since {said(payment.paid_at)}, ended. Receipt no. {receipt}" in listing


@pytest.mark.parametrize("answer", ["refused", "down"])
async def test_a_cancellation_stripe_does_not_take_changes_nothing_and_says_so(shop, stripe_api, answer):
    from standins.stripe import StripeError

    client, bot, ann, _boss = shop
    paid, period_end = await renewing(client, bot, ann, stripe_api)
    path = f"/v1/subscriptions/{paid['subscription']}"
    # refused: a 400, not retried; down: a 500, which the stripe client retries twice
    stripe_api.fail(path, *([StripeError.refused()] if answer == "refused" else [StripeError.outage()] * 3))
    await ann.say("/purchases cancel")
    [failed] = await ann.press("Yes, cancel the renewal")
    assert failed == ("I couldn't cancel the renewal of “Passwords that hold” just now, so nothing has changed and it "
                      "still renews. Please try again in a few minutes, or send /paysupport.")
    assert (await payments(bot))[0].renewal_cancelled_at is None
    assert stripe_api.subscription(paid["subscription"])["cancel_at_period_end"] is False
    [listing] = await ann.say("/purchases")
    assert f"renews on {said(period_end)}." in listing and ann.labels() == ["Cancel renewal"]

    # Stripe is back: the same confirmation goes through.
    [done] = await ann.press("Yes, cancel the renewal")
    assert done.startswith("Done: “Passwords that hold” will not renew")
    assert stripe_api.subscription(paid["subscription"])["cancel_at_period_end"] is True


async def test_keep_it_leaves_the_subscription_renewing(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, period_end = await renewing(client, bot, ann, stripe_api)
    await ann.say("/purchases")
    await ann.press("Cancel renewal")
    [kept] = await ann.press("Keep it")
    assert kept == "Good: your subscription to “Passwords that hold” goes on as before."
    assert stripe_api.called(f"/v1/subscriptions/{paid['subscription']}") == []
    assert (await payments(bot))[0].renewal_cancelled_at is None
    [listing] = await ann.say("/purchases")
    assert f"renews on {said(period_end)}." in listing


async def test_another_learners_subscription_cannot_be_cancelled_by_button_or_by_receipt(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    bob = Learning(bot, ann.channel, chat="bob")
    # A button never offered to Bob, forged with Ann's payment: refused before anything reads it.
    assert await bob.say("Yes, cancel the renewal", choice=f"renewal:cancel:{payment.id}") == [
        "That button isn't available."]
    assert await bob.say("Cancel renewal", choice=f"renewal:ask:{payment.id}") == ["That button isn't available."]
    # As they were sent before these buttons had their own prefix: refused alike.
    assert await bob.say("Yes, cancel the renewal", choice=f"pay:renewal-cancel:{payment.id}") == [
        "That button isn't available."]
    # Typed with Ann's receipt number: not his.
    assert await bob.say(f"/purchases cancel LB-{payment.id:06d}") == [
        f"You have no subscription in force with receipt no. LB-{payment.id:06d}. Send /purchases to see yours."]
    assert bob.labels() == []
    assert stripe_api.called(f"/v1/subscriptions/{paid['subscription']}") == []
    assert (await payments(bot))[0].renewal_cancelled_at is None


async def test_a_renewal_cancelled_in_stripes_portal_is_recorded_and_one_resumed_there_cleared(shop, stripe_api):
    client, bot, ann, _boss = shop
    paid, period_end = await renewing(client, bot, ann, stripe_api)
    subscription = stripe_api.subscriptions[paid["subscription"]]
    subscription.update(cancel_at_period_end=True, cancel_at=int(period_end.timestamp()),
                        canceled_at=int(datetime.now(UTC).timestamp()))
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    assert (await payments(bot))[0].renewal_cancelled_at is not None
    [listing] = await ann.say("/purchases")
    assert f"ends on {said(period_end)} (renewal cancelled)." in listing and ann.labels() == []

    subscription.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    assert (await payments(bot))[0].renewal_cancelled_at is None
    [listing] = await ann.say("/purchases")
    assert f"renews on {said(period_end)}." in listing and ann.labels() == ["Cancel renewal"]
    # Typed, the confirmation names the course and the day: the same as the button's.
    [asked] = await ann.say("/purchases cancel")
    assert asked.startswith("Cancel the renewal of “Passwords that hold”?") and said(period_end) in asked


async def test_a_cancel_renewal_button_sent_before_the_buttons_had_their_own_prefix_still_works(shop, stripe_api):
    """Buttons already in learners' chats carry the values they were sent with (`pay:renewal…`): pressed now, they
    ask and cancel as the buttons sent today (`renewal:…`) do."""
    client, bot, ann, _boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    [payment] = await payments(bot)
    await ann.say("/purchases")
    assert [choice.value for choice in ann.last().choices] == [f"renewal:ask:{payment.id}"]
    async with bot.db.transaction() as session:  # the buttons as a /purchases sent before offered them
        offered = await session.scalar(select(OfferedChoice).where(OfferedChoice.value == f"renewal:ask:{payment.id}"))
        for before in ("renewal", "renewal-cancel", "renewal-keep"):
            session.add(OfferedChoice(conversation_id=offered.conversation_id, member=offered.member,
                                      value=f"pay:{before}:{payment.id}"))
    [asked] = await ann.say("Cancel renewal", choice=f"pay:renewal:{payment.id}")
    assert asked.startswith("Cancel the renewal of “Passwords that hold”?")
    [kept] = await ann.say("Keep it", choice=f"pay:renewal-keep:{payment.id}")
    assert kept == "Good: your subscription to “Passwords that hold” goes on as before."
    [done] = await ann.say("Yes, cancel the renewal", choice=f"pay:renewal-cancel:{payment.id}")
    assert done.startswith("Done: “Passwords that hold” will not renew")
    assert stripe_api.subscription(paid["subscription"])["cancel_at_period_end"] is True
    assert (await payments(bot))[0].renewal_cancelled_at is not None


async def past_due(client, bot, ann: Learning, stripe_api) -> dict:
    """Ann subscribed; her renewal's payment failed an hour ago, Stripe retrying it, her lessons open through the
    grace: the completed checkout."""
    paid, _subscription = await subscribed(client, bot, ann, stripe_api)
    failed = stripe_api.renew(paid["subscription"], paid=False)
    await post_event(client, invoice_event(failed, "invoice.payment_failed"))
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    due = utcnow() - timedelta(hours=1)  # the period paid for ended an hour ago, at the renewal that failed
    async with bot.db.transaction() as session:
        await session.execute(update(Payment).values(period_end=due))
        await session.execute(update(Entitlement).values(expires_at=due + GRACE))
    [payment] = await payments(bot)
    assert payment.subscription_status == "past_due" and stripe_api.subscription(paid["subscription"])[
        "status"] == "past_due"
    return paid


async def test_a_past_due_subscriber_cancels_now_which_stops_stripe_retrying_and_ends_the_access(shop, stripe_api):
    """Past due, Stripe retries the renewal's payment for days: cancelling at the period's end would leave it
    retried (the period moved on at the renewal), so the subscription is cancelled now (DELETE, which stops Stripe
    collecting its invoices), the learner told beforehand that the access it gives ends at once."""
    client, bot, ann, _boss = shop
    paid = await past_due(client, bot, ann, stripe_api)
    [listing] = await ann.say("/purchases")
    assert "not paid yet" in listing and ann.labels() == ["Cancel renewal"]
    [asked] = await ann.say("/purchases cancel")
    assert asked == ("Cancel the renewal of “Passwords that hold”? Its payment has not gone through, and Stripe is "
                     "still trying your card: cancelling ends the subscription now, so nothing more will be charged. "
                     "The period you paid for is over, so the access it gives ends at once.")
    assert ann.labels() == ["Yes, cancel the renewal", "Keep it"]
    [kept] = await ann.press("Keep it")
    assert kept == "Good: your subscription to “Passwords that hold” goes on as before."
    assert stripe_api.called(f"/v1/subscriptions/{paid['subscription']}") == []

    [done] = await ann.press("Yes, cancel the renewal")
    assert done == ("Done: your subscription to “Passwords that hold” is cancelled, and nothing more will be charged. "
                    "The lessons after the free preview are locked again. Send /buy passwords-that-hold to subscribe "
                    "again; your place is kept.")
    [call] = stripe_api.called(f"/v1/subscriptions/{paid['subscription']}")
    assert call.params == {} and call.result["status"] == "canceled"  # DELETE: not cancel_at_period_end
    [payment] = await payments(bot)
    assert payment.subscription_status == "canceled" and payment.renewal_cancelled_at is not None
    assert await expiry(bot) <= datetime.now(UTC)
    [locked] = await ann.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")

    # Stripe reports the end it made: recorded already, and not told twice.
    before = len(ann.channel.texts("ann"))
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"]),
                                                "customer.subscription.deleted"))
    await bot.settle()
    assert ann.channel.texts("ann")[before:] == []
    [listing] = await ann.say("/purchases")
    assert ", ended. Receipt no." in listing and ann.labels() == []


async def test_cancelling_in_the_hour_before_stripe_charges_the_renewal_says_no_payment_failed_and_stops_that_charge(
        shop, stripe_api):
    """The period ended five minutes ago; Stripe charges the renewal about an hour after (our record moves on its
    invoice.paid), on the next period's invoice, made when the period ended: a cancellation at the period's end
    would still be charged it. Nothing failed, so the learner is not told so; cancelling ends the subscription now
    (DELETE), which stops that charge, and the access the period gave ends."""
    client, bot, ann, _boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    due = utcnow() - timedelta(minutes=5)
    async with bot.db.transaction() as session:
        await session.execute(update(Payment).values(period_end=due))
        await session.execute(update(Entitlement).values(expires_at=due + GRACE))
    [asked] = await ann.say("/purchases cancel")
    assert asked == ("Cancel the renewal of “Passwords that hold”? The period you paid for is over and Stripe is about "
                     "to charge the next one: cancelling ends the subscription now, so that charge is not made and "
                     "nothing more will be charged. The access the period gave ends at once.")
    [done] = await ann.press("Yes, cancel the renewal")
    assert done.startswith("Done: your subscription to “Passwords that hold” is cancelled, and nothing more will be "
                           "charged.")
    [call] = stripe_api.called(f"/v1/subscriptions/{paid['subscription']}")
    assert call.params == {} and call.result["status"] == "canceled"  # DELETE: not cancel_at_period_end
    [payment] = await payments(bot)
    assert payment.subscription_status == "canceled" and payment.renewal_cancelled_at is not None
    assert await expiry(bot) <= datetime.now(UTC)


OVERDUE_ASKED = ("Cancel the renewal of “Passwords that hold”? Its payment has not gone through, and Stripe is still "
                 "trying your card: cancelling ends the subscription now, so nothing more will be charged. The period "
                 "you paid for is over, so the access it gives ends at once.")
CHANGED = "Your subscription to “Passwords that hold” has changed since I asked, so I have done nothing yet."


async def test_a_yes_to_cancel_at_the_periods_end_pressed_after_the_renewal_failed_asks_again_before_ending_it(
        shop, stripe_api):
    """Ann was offered to cancel at the period's end, her lessons staying open; before she pressed Yes, her renewal's
    payment failed. That Yes did not agree to losing the access now: she is told the subscription changed and asked
    again, and only the Yes to that cancels it now."""
    client, bot, ann, _boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    [asked] = await ann.say("/purchases cancel")
    assert "your lessons stay open until" in asked
    failed = stripe_api.renew(paid["subscription"], paid=False)
    await post_event(client, invoice_event(failed, "invoice.payment_failed"))
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    assert (await payments(bot))[0].subscription_status == "past_due"

    changed, asked_again = await ann.press("Yes, cancel the renewal")
    assert changed == CHANGED
    assert asked_again == OVERDUE_ASKED
    assert stripe_api.called(f"/v1/subscriptions/{paid['subscription']}") == []
    assert (await payments(bot))[0].renewal_cancelled_at is None

    [done] = await ann.press("Yes, cancel the renewal")
    assert done.startswith("Done: your subscription to “Passwords that hold” is cancelled")
    [call] = stripe_api.called(f"/v1/subscriptions/{paid['subscription']}")
    assert call.params == {} and call.result["status"] == "canceled"


async def test_a_yes_whose_stripe_call_meets_a_failed_renewal_says_nothing_stripe_did_not_do(shop, stripe_api):
    """Ann presses Yes to cancel at the period's end; while Stripe answers, her renewal's payment is reported failed.
    The turn replayed after the call finds the subscription overdue: the period's end cancellation's "ok" is not
    taken for an end now Stripe was never asked for (the access stays, the subscription is not recorded ended), and
    Ann is asked again."""
    client, bot, ann, _boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    await ann.say("/purchases cancel")
    original = StripeStandIn._update_subscription.__get__(stripe_api)

    async def failing_meanwhile(request):
        async with bot.db.transaction() as session:  # Stripe's report of the failed renewal, come meanwhile
            await session.execute(update(Payment).values(subscription_status="past_due"))
        return await original(request)

    for resource in stripe_api._runner.app.router.resources():  # aiohttp bound the handler at start
        for route in resource:
            if route.method == "POST" and "subscriptions" in str(resource.canonical):
                route._handler = failing_meanwhile
    before = await expiry(bot)
    changed, asked_again = await ann.press("Yes, cancel the renewal")
    assert changed == CHANGED
    assert asked_again == OVERDUE_ASKED
    [payment] = await payments(bot)
    assert payment.subscription_status == "past_due" and await expiry(bot) == before
    assert stripe_api.subscription(paid["subscription"])["status"] == "active"


async def test_a_past_due_subscription_whose_cancellation_stripe_refuses_still_renews_and_says_so(shop, stripe_api):
    from standins.stripe import StripeError

    client, bot, ann, _boss = shop
    paid = await past_due(client, bot, ann, stripe_api)
    stripe_api.fail(f"/v1/subscriptions/{paid['subscription']}", StripeError.refused())
    await ann.say("/purchases cancel")
    [failed] = await ann.press("Yes, cancel the renewal")
    assert failed.startswith("I couldn't cancel the renewal of “Passwords that hold” just now, so nothing has changed")
    [payment] = await payments(bot)
    assert payment.subscription_status == "past_due" and payment.renewal_cancelled_at is None
    assert await expiry(bot) > datetime.now(UTC)  # the grace goes on


async def test_a_subscriber_whose_renewal_is_cancelled_redeems_a_code_that_outlasts_the_subscription(shop,
                                                                                                    stripe_api):
    """A subscription is not the course for good: it ends with its period. A code an admin gives opens the course
    without end, and the subscription's end then leaves the lessons open."""
    client, bot, ann, boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    await ann.say("/purchases cancel")
    [done] = await ann.press("Yes, cancel the renewal")
    assert done.startswith("Done:")
    [made] = await boss.say("/admin code passwords-that-hold 1")
    code = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    [accepted, *_rest] = await ann.say(f"/redeem {code}")
    assert accepted == "🎟️ Code accepted: “Passwords that hold” is open to you."

    ended = stripe_api.period_ends(paid["subscription"])
    before = len(ann.channel.texts("ann"))
    await post_event(client, subscription_event(ended, "customer.subscription.deleted"))
    await bot.settle()
    [told] = ann.channel.texts("ann")[before:]
    assert "Your access to the whole course continues for good through another grant." in told
    [lesson, *_rest] = await ann.say("/next")
    assert "is part of the full course" not in lesson


async def test_a_subscriber_whose_subscription_renews_redeems_a_code_for_good_and_is_told_it_still_renews(shop,
                                                                                                         stripe_api):
    """The code opens the course for good; the subscription goes on charging until she cancels it, which she is told
    (and how), her subscription left as it was."""
    client, bot, ann, boss = shop
    paid, _period_end = await renewing(client, bot, ann, stripe_api)
    [made] = await boss.say("/admin code passwords-that-hold 1")
    code = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    [accepted, *_rest] = await ann.say(f"/redeem {code}")
    assert accepted == ("🎟️ Code accepted: “Passwords that hold” is open to you. Your subscription to it still renews, "
                        "and will be charged as before: send /purchases cancel to stop it.")
    assert stripe_api.subscription(paid["subscription"])["cancel_at_period_end"] is False
    assert stripe_api.called(f"/v1/subscriptions/{paid['subscription']}") == []


async def test_a_subscriber_whose_paid_month_outlasts_a_code_for_some_days_keeps_the_code_unused(shop, stripe_api):
    """A code for 7 days runs from now, alongside the month paid for: it would add nothing, so its one use is left for
    another learner, and Ann is told until when she has the course (and sent no lesson again)."""
    from storage.payments import AccessCode

    client, bot, ann, boss = shop
    await renewing(client, bot, ann, stripe_api)
    [made] = await boss.say("/admin code passwords-that-hold 1 7")
    code = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    before = await expiry(bot)
    assert before > datetime.now(UTC) + timedelta(days=7)
    said_back = await ann.say(f"/redeem {code}")
    assert said_back == [f"You already have “Passwords that hold” until {said(before)}: this code would add nothing, "
                         f"so it is left unused for someone else. Send /next to go on."]
    async with bot.db.transaction() as session:
        assert await session.scalar(select(AccessCode.uses_left)) == 1
    assert [e.expires_at for e in await entitlements(bot)] == [before]

    # A code that runs past the access held is taken, as before.
    [made] = await boss.say("/admin code passwords-that-hold 1 90")
    longer = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    [accepted, *_rest] = await ann.say(f"/redeem {longer}")
    assert accepted == "🎟️ Code accepted: “Passwords that hold” is open to you."
    assert max(e.expires_at for e in await entitlements(bot)) > before


async def test_a_cancellation_set_in_stripe_for_a_later_day_renews_until_the_period_that_day_ends(shop, stripe_api):
    """Set in Stripe's Dashboard to cancel two months on (`cancel_at`, not `cancel_at_period_end`), the subscription
    renews twice more: /purchases says it renews, and offers to cancel it sooner. Once the period running ends by
    that day (Stripe's last period ends at `cancel_at`), its renewal is cancelled."""
    client, bot, ann, _boss = shop
    paid, period_end = await renewing(client, bot, ann, stripe_api)
    later = int((period_end + timedelta(days=60)).timestamp())
    subscription = stripe_api.subscriptions[paid["subscription"]]
    subscription.update(cancel_at=later, canceled_at=int(datetime.now(UTC).timestamp()))
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    assert (await payments(bot))[0].renewal_cancelled_at is None
    [listing] = await ann.say("/purchases")
    assert f"renews on {said(period_end)}." in listing and "renewal cancelled" not in listing
    assert ann.labels() == ["Cancel renewal"]

    subscription["items"]["data"][0]["current_period_end"] = later  # the period before that day has begun
    await post_event(client, subscription_event(stripe_api.subscription(paid["subscription"])))
    await bot.settle()
    assert (await payments(bot))[0].renewal_cancelled_at is not None


async def test_live_mode_subscription_and_invoice_events_at_a_test_mode_install_match_no_offer(shop, stripe_api):
    client, bot, ann, _boss = shop
    session = await subscribe(ann, bot, stripe_api)
    paid = stripe_api.pay(session["id"])
    subscription = stripe_api.subscription(paid["subscription"])
    invoice = stripe_api.invoices[paid["invoice"]]
    refused = "refused: a live-mode event, and this install's Stripe key is test"
    for early in (subscription_event(subscription, "customer.subscription.created"), invoice_event(invoice)):
        early["livemode"] = early["data"]["object"]["livemode"] = True  # its metadata names Ann's open offer
        response = await post_event(client, early)
        assert response.status_code == 200 and response.json()["outcome"] == refused
    await bot.settle()
    assert await entitlements(bot) == []
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.OPEN and payment.subscription_reference is None

    await post_event(client, checkout_event(paid))
    await bot.settle()
    renewal = invoice_event(invoice)
    renewal["livemode"] = renewal["data"]["object"]["livemode"] = True  # now by the subscription's id
    assert (await post_event(client, renewal)).json()["outcome"] == refused
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.PAID
