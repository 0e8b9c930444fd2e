"""Buying a course with Telegram Stars: real webhook requests through the app, python-telegram-bot parsing the
pre_checkout_query and successful_payment updates and sending sendInvoice, answerPreCheckoutQuery and
refundStarPayment to the Bot API stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from standins.telegram import (
    TOKEN,
    Call,
    Fault,
    payment_update,
    person,
    pre_checkout_update,
    refund_update,
    text_update,
)
from storage.models import User, utcnow
from storage.payments import PaymentStatus
from tests.dialogs.learning_support import PAID, import_sample
from tests.dialogs.payment_support import entitlements, monthly_copy, payments, takings
from tests.dialogs.test_telegram_transcript import CHAT, SECRET, TelegramLearner
from tests.support import running, standin  # noqa: F401 (the fixture)

BOSS = 3333333
OLGA = 4444444  # a Telegram user who never took the course
STARS = 150  # 3.00 GBP at 50 Stars a pound


def selling_in_stars(settings, standin):
    """Telegram through the stand-in, 50 Stars a pound, and BOSS an admin."""
    return settings.model_copy(update={
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": SECRET, "telegram_api_base_url": standin.base_url,
        "web_chat_enabled": False, "stars_per_unit": {"GBP": Decimal(50)}, "admins": (f"telegram:{BOSS}",),
        "outbox_paced": False,  # Telegram's one message a second in a chat is not what these tests are about
    })


@pytest.fixture
async def telegram(settings, standin):
    async with running(selling_in_stars(settings, standin)) as (client, bot):
        await import_sample(bot, PAID)
        yield client, bot, standin


async def onboarded(client, standin, *, course: str = "Passwords that hold — 3.00 GBP", chat: int = CHAT,
                    name: str = "Marta") -> TelegramLearner:
    marta = TelegramLearner(client, standin, chat=chat, name=name)
    await marta.say("/start")
    await marta.press("Yes, let's start")
    await marta.press(name)
    await marta.say("Madrid")
    await marta.press("Yes, that's right")
    await marta.press("Morning, 08:00")
    await marta.press("Weekdays")
    await marta.press(course)
    await marta.press("1 lesson (about 5 minutes)")
    return marta


async def invoice(marta: TelegramLearner, standin):
    before = len(standin.called("sendInvoice"))
    await marta._post(marta_update(marta, "/buy"))
    await standin.wait_for(lambda: len(standin.called("sendInvoice")) > before)
    return standin.called("sendInvoice")[-1]


def marta_update(marta: TelegramLearner, text: str) -> dict:
    return text_update(text, chat_id=CHAT, user=marta.user)


async def pays(marta: TelegramLearner, standin, invoice) -> tuple[dict, list[str]]:
    """Marta presses Pay on `invoice`: Telegram's last check is answered yes, then the payment is reported; what
    Telegram reported, and the two replies (the confirmation, the next lesson)."""
    assert (await checked(marta, standin, pre_checkout_update(invoice, user=marta.user)))["ok"] == "true"
    before = len(standin.texts(CHAT))
    paid = standin.pay(invoice, marta.user)
    await marta._post(payment_update(paid, chat_id=CHAT, user=marta.user))
    return paid, await marta._replies(before, 2)


async def subscription_link(marta: TelegramLearner, standin):
    """Marta sends /buy for the monthly course: the subscription's invoice link the bot made."""
    before = len(standin.texts(CHAT))
    await marta._post(marta_update(marta, "/buy"))
    await marta._replies(before, 1)
    return standin.called("createInvoiceLink")[-1]


async def subscribed(client, standin) -> tuple[TelegramLearner, dict]:
    """Marta onboarded into the monthly course and subscribed: what Telegram reported of her first charge."""
    marta = await onboarded(client, standin, course="Passwords that hold — 3.00 GBP a month")
    first, _replies = await pays(marta, standin, await subscription_link(marta, standin))
    return marta, first


async def refunded_by_the_boss(marta: TelegramLearner, standin, payment) -> str:
    """The admin refunds `payment` with /admin refund: their answer."""
    before = len(standin.texts(BOSS))
    await marta._post(text_update(f"/admin refund LB-{payment.id:06d}", chat_id=BOSS, user=person(BOSS, "Boss")))
    await standin.wait_for(lambda: len(standin.texts(BOSS)) > before)
    return standin.texts(BOSS)[-1]


async def checked(marta: TelegramLearner, standin, update: dict) -> dict:
    before = len(standin.called("answerPreCheckoutQuery"))
    await marta._post(update)
    await standin.wait_for(lambda: len(standin.called("answerPreCheckoutQuery")) > before)
    return standin.called("answerPreCheckoutQuery")[-1].params


async def test_a_telegram_learner_buys_with_stars_and_continues(telegram):
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    sent = await invoice(marta, standin)
    assert sent.params["currency"] == "XTR" and json.loads(sent.params["prices"]) == [
        {"label": "Passwords that hold", "amount": STARS}]
    [payment] = await payments(bot)
    assert sent.params["payload"] == f"lb1:{payment.id}:{payment.user_id}:{payment.course_id}:{STARS}"

    paid, (confirmed, lesson) = await pays(marta, standin, sent)
    assert confirmed.startswith("✅ Payment received: “Passwords that hold” is yours")
    assert f"You paid {STARS} Stars; receipt no. LB-{payment.id:06d}" in confirmed
    assert lesson.startswith("📘 Lesson 1 of 3")
    [granted] = await entitlements(bot)
    assert granted.reference == f"telegram:{paid['telegram_payment_charge_id']}"

    # Telegram delivers the same payment again (a new update): nothing more is granted or said.
    await marta._post(payment_update(paid, chat_id=CHAT, user=marta.user))
    await bot.settle()
    assert len(await entitlements(bot)) == 1
    assert sum(text.startswith("✅ Payment received") for text in standin.texts(CHAT)) == 1


async def test_the_last_check_refuses_an_owned_course_a_changed_price_and_a_stale_invoice(telegram):
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    first = await invoice(marta, standin)
    second = await invoice(marta, standin)

    changed = await checked(marta, standin, pre_checkout_update(second, user=marta.user, total_amount=1))
    assert changed["ok"] == "false" and "price has changed" in changed["error_message"]
    forged = await checked(marta, standin, pre_checkout_update(second, user=marta.user,
                                                               invoice_payload="lb1:999:1:1:150"))
    assert forged["ok"] == "false" and "no longer valid" in forged["error_message"]

    await marta._post(payment_update(standin.pay(first, marta.user), chat_id=CHAT, user=marta.user))
    await bot.settle()
    owned = await checked(marta, standin, pre_checkout_update(second, user=marta.user))
    assert owned["ok"] == "false" and "already have this course" in owned["error_message"]
    again = await checked(marta, standin, pre_checkout_update(first, user=marta.user))
    assert again["ok"] == "false" and "no longer valid" in again["error_message"]
    assert len(await entitlements(bot)) == 1


async def test_an_admin_refund_gives_the_stars_back_and_revokes(telegram):
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    sent = await invoice(marta, standin)
    paid = standin.pay(sent, marta.user)
    await marta._post(payment_update(paid, chat_id=CHAT, user=marta.user))
    await bot.settle()
    [payment] = await payments(bot)

    assert (await refunded_by_the_boss(marta, standin, payment)).startswith(f"Refunded payment LB-{payment.id:06d}")
    [refund] = standin.called("refundStarPayment")
    assert refund.params == {"user_id": str(CHAT), "telegram_payment_charge_id": paid["telegram_payment_charge_id"]}
    await bot.dispatcher.flush(10)
    await standin.wait_for(lambda: any("was refunded" in text for text in standin.texts(CHAT)))
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert (await entitlements(bot))[0].revoked_at is not None


async def test_an_erased_buyers_stars_cannot_be_given_back_and_the_admin_is_told_why(telegram):
    """Telegram gives Stars back only to the account that paid, named by its user id; erasing the buyer erased it
    (the sale is kept, detached): the admin hears so, in words, and nothing is asked of Telegram."""
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    sent = await invoice(marta, standin)
    await marta._post(payment_update(standin.pay(sent, marta.user), chat_id=CHAT, user=marta.user))
    await bot.settle()
    await marta.say("/stop")
    await marta.press("Stop and delete my data")
    [payment] = await payments(bot)
    assert payment.user_id is None and payment.status == PaymentStatus.PAID

    answer = await refunded_by_the_boss(marta, standin, payment)
    assert answer == ("The refund did not go through: its buyer erased their data, and Telegram gives Stars back only "
                      "to the account that paid (its user id, erased with the rest): nothing can be given back from "
                      "here")
    assert not standin.called("refundStarPayment") and (await payments(bot))[0].status == PaymentStatus.PAID


async def test_a_refund_telegram_makes_of_an_earlier_renewal_counts_that_month(telegram_monthly):
    """Telegram gives back the second month of three (a dispute decided for the learner): the access ends, and the
    revenue counts that month's Stars given back."""
    client, bot, standin = telegram_monthly
    marta, first = await subscribed(client, standin)
    second = standin.renew(first)
    await marta._post(payment_update(second, chat_id=CHAT, user=marta.user))
    third = standin.renew(second)
    await marta._post(payment_update(third, chat_id=CHAT, user=marta.user))
    await bot.settle()
    assert await takings(bot) == [(1, 2, 3 * STARS, 0, 0)]
    await marta._post(refund_update(second, chat_id=CHAT, user=marta.user))
    await bot.settle()
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert await takings(bot) == [(1, 2, 3 * STARS, 1, STARS)]


async def test_a_refund_telegram_makes_itself_takes_the_course_back_once(telegram):
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    paid, _replies = await pays(marta, standin, await invoice(marta, standin))
    before = len(standin.texts(CHAT))
    await marta._post(refund_update(paid, chat_id=CHAT, user=marta.user))  # a dispute Telegram decided for her
    [told] = await marta._replies(before, 1)
    assert told.startswith("Your payment for “Passwords that hold” was refunded")
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert (await entitlements(bot))[0].revoked_at is not None
    await marta._post(refund_update(paid, chat_id=CHAT, user=marta.user))  # reported again: nothing more
    await bot.settle()
    assert sum("was refunded" in text for text in standin.texts(CHAT)) == 1


async def test_a_payment_that_does_not_match_its_invoice_is_given_back_once(telegram):
    client, bot, standin = telegram
    marta = TelegramLearner(client, standin)
    await marta._post(marta_update(marta, "/buy passwords-that-hold"))
    await standin.wait_for(lambda: len(standin.called("sendInvoice")) == 1)
    [sent] = standin.called("sendInvoice")
    paid = standin.pay(sent, marta.user) | {"total_amount": 1}
    await marta._post(payment_update(paid, chat_id=CHAT, user=marta.user))
    await standin.wait_for(lambda: any("did not match" in text for text in standin.texts(CHAT)))
    [payment] = await payments(bot)
    assert payment.status == PaymentStatus.REJECTED and "paid 1 XTR" in payment.note
    assert payment.refunded_at is not None
    assert await entitlements(bot) == []
    [refund] = standin.called("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == paid["telegram_payment_charge_id"]
    assert refund.params["user_id"] == str(marta.user["id"])
    await marta._post(payment_update(paid, chat_id=CHAT, user=marta.user))  # reported again
    await bot.settle()
    assert len(standin.called("refundStarPayment")) == 1
    assert sum("did not match" in text for text in standin.texts(CHAT)) == 1


def test_telegrams_payment_updates_become_messages_by_python_telegram_bots_own_types():
    from telegram import Bot, Update

    from channels.telegram.updates import PAYMENT_CHECK, PAYMENT_DONE, buyer_chat, interpret

    bot = Bot(TOKEN)
    invoice = Call("sendInvoice", {"chat_id": "-100123", "currency": "XTR", "payload": "lb1:1:2:3:150",
                                   "prices": json.dumps([{"label": "Passwords", "amount": 150}])}, {}, "ok",
                   {"invoice": {"total_amount": 150}})
    check = interpret(Update.de_json(pre_checkout_update(invoice, user=person(CHAT)), bot))
    # (the check is the buyer's, in the chat of their checks beside their private chat, whatever chat was invoiced)
    assert (check.choice, check.chat_id, check.sender_id) == (PAYMENT_CHECK, f"checkout:{CHAT}", str(CHAT))
    assert buyer_chat(check.chat_id) == str(CHAT)
    assert check.meta["pre_checkout"]["total_amount"] == 150 and check.meta["pre_checkout"]["currency"] == "XTR"
    paid = {"currency": "XTR", "total_amount": 150, "invoice_payload": "lb1:1:2:3:150",
            "telegram_payment_charge_id": "stxABC", "provider_payment_charge_id": ""}
    group = payment_update(paid, chat_id=CHAT)
    group["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Study group"}
    done = interpret(Update.de_json(group, bot))  # in a group too: Telegram's report, not a message to the bot
    assert (done.choice, done.chat_id) == (PAYMENT_DONE, "-100123")
    assert done.meta["successful_payment"]["telegram_payment_charge_id"] == "stxABC" and done.meta["platform_report"]
    assert done.meta["successful_payment"]["is_recurring"] is False
    renewal = paid | {"is_recurring": True, "is_first_recurring": False, "subscription_expiration_date": 1800000000}
    renewed = interpret(Update.de_json(payment_update(renewal, chat_id=CHAT), bot))
    assert {key: renewed.meta["successful_payment"][key]
            for key in ("is_recurring", "is_first_recurring", "subscription_expiration_date")} == {
        "is_recurring": True, "is_first_recurring": False, "subscription_expiration_date": 1800000000}


@pytest.fixture
async def telegram_monthly(settings, standin, tmp_path):
    """As `telegram`, with the course priced at 3.00 GBP a month: 150 Stars every 30 days."""
    async with running(selling_in_stars(settings, standin)) as (client, bot):
        await import_sample(bot, monthly_copy(tmp_path))
        yield client, bot, standin


async def test_a_course_by_the_month_is_a_stars_subscription_renewed_then_refunded_and_cancelled(telegram_monthly):
    client, bot, standin = telegram_monthly
    marta = await onboarded(client, standin, course="Passwords that hold — 3.00 GBP a month")
    before = len(standin.texts(CHAT))
    await marta._post(marta_update(marta, "/buy"))
    [offer] = await marta._replies(before, 1)
    [link] = standin.called("createInvoiceLink")
    assert link.params["subscription_period"] == str(30 * 24 * 3600) and link.params["currency"] == "XTR"
    assert json.loads(link.params["prices"]) == [{"label": "Passwords that hold", "amount": STARS}]
    assert offer.startswith("Every lesson and quiz of “Passwords that hold”, for 150 ⭐ every 30 days")
    button = standin.called("sendMessage")[-1].reply_markup["inline_keyboard"][0][0]
    assert button["text"] == "Subscribe for 150 ⭐" and button["url"].startswith("https://t.me/$")
    assert not standin.called("sendInvoice")

    first, (confirmed, lesson) = await pays(marta, standin, link)
    assert confirmed.startswith("✅ Payment received: you're subscribed to “Passwords that hold”")
    assert lesson.startswith("📘 Lesson 1 of 3")
    grace = timedelta(hours=bot.settings.subscription_grace_hours)
    [granted] = await entitlements(bot)
    assert granted.expires_at == datetime.fromtimestamp(first["subscription_expiration_date"], UTC) + grace

    # Thirty days on, Telegram charges again: the same payload, a new charge. Access follows; said twice, once.
    renewal = standin.renew(first)
    for _ in range(2):
        await marta._post(payment_update(renewal, chat_id=CHAT, user=marta.user))
    await bot.settle()
    [granted] = await entitlements(bot)
    assert granted.expires_at == datetime.fromtimestamp(renewal["subscription_expiration_date"], UTC) + grace
    [payment] = await payments(bot)
    assert (payment.status, payment.charge_reference) == (PaymentStatus.PAID, renewal["telegram_payment_charge_id"])
    assert sum(text.startswith("✅ Payment received") for text in standin.texts(CHAT)) == 1
    assert await takings(bot) == [(1, 1, 2 * STARS, 0, 0)]  # the purchase and its renewal

    # A refund gives back the period running now and stops the subscription; Telegram failing to cancel it does not
    # keep the access of a payment already given back (the failure is logged for the admin).
    standin.fail("editUserStarSubscription", Fault.server_error())
    assert (await refunded_by_the_boss(marta, standin, payment)).startswith(f"Refunded payment LB-{payment.id:06d}")
    [refund] = standin.called("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == renewal["telegram_payment_charge_id"]
    assert not standin.called("editUserStarSubscription") and standin.called("editUserStarSubscription", ok=False)
    assert (await payments(bot))[0].status == PaymentStatus.REFUNDED
    assert (await entitlements(bot))[0].revoked_at is not None
    assert await takings(bot) == [(1, 1, 2 * STARS, 1, STARS)]  # the renewal's Stars went back, the first month's not
    await bot.dispatcher.flush(10)
    await standin.wait_for(lambda: any("was refunded" in text for text in standin.texts(CHAT)))

    # So Telegram renews it once more: the Stars go back at once, it is cancelled, and the learner is told.
    stray = standin.renew(renewal)
    before = len(standin.texts(CHAT))
    await marta._post(payment_update(stray, chat_id=CHAT, user=marta.user))
    [told] = await marta._replies(before, 1)
    assert told.startswith("Telegram charged you for “Passwords that hold”, whose subscription had already ended")
    assert [call.params["telegram_payment_charge_id"] for call in standin.called("refundStarPayment")] == [
        renewal["telegram_payment_charge_id"], stray["telegram_payment_charge_id"]]
    [cancel] = standin.called("editUserStarSubscription")
    assert cancel.params == {"user_id": str(CHAT), "telegram_payment_charge_id": stray["telegram_payment_charge_id"],
                             "is_canceled": "true"}
    assert (await entitlements(bot))[0].revoked_at is not None


async def test_paying_in_stars_is_the_buyers_activity_and_a_renewal_telegram_charges_is_not(telegram_monthly):
    """Marta's last check before paying (she pressed Pay) is her activity; thirty days on, away for three, Telegram
    charges her renewal: her access follows, and she is still as away as she was (her come-back reminders go on)."""
    client, bot, standin = telegram_monthly
    marta, first = await subscribed(client, standin)
    away = utcnow() - timedelta(days=3)
    async with bot.db.transaction() as session:
        await session.execute(update(User).values(last_active_at=away))
    renewal = standin.renew(first)
    await marta._post(payment_update(renewal, chat_id=CHAT, user=marta.user))
    await bot.settle()
    [granted] = await entitlements(bot)
    grace = timedelta(hours=bot.settings.subscription_grace_hours)
    assert granted.expires_at == datetime.fromtimestamp(renewal["subscription_expiration_date"], UTC) + grace
    async with bot.db.sessions() as session:
        assert await session.scalar(select(User.last_active_at).where(User.id == granted.user_id)) == away
    [link] = standin.called("createInvoiceLink")
    await checked(marta, standin, pre_checkout_update(link, user=marta.user))  # (refused: she has it)
    async with bot.db.sessions() as session:
        assert await session.scalar(select(User.last_active_at).where(User.id == granted.user_id)) > away


async def test_deleting_my_data_cancels_my_stars_subscription_first(telegram_monthly):
    client, bot, standin = telegram_monthly
    marta, first = await subscribed(client, standin)

    await marta.say("/stop")
    [done] = await marta.press("Stop and delete my data")
    assert done.startswith("Done: I deleted everything I kept about you")
    [cancel] = standin.called("editUserStarSubscription")
    assert cancel.params == {"user_id": str(CHAT), "telegram_payment_charge_id": first["telegram_payment_charge_id"],
                             "is_canceled": "true"}
    [payment] = await payments(bot)
    assert (payment.user_id, payment.sender_id) == (None, "")  # the sale is kept, without the person


async def test_a_dashboard_where_telegram_is_not_connected_erases_no_stars_subscriber_and_says_where(
        telegram_monthly, settings, monkeypatch, tmp_path, capsys):
    """docker compose's `webchat` serves the dashboard too, without Telegram: an erasure there could not cancel a
    Stars subscription, which would go on charging a person no longer known. It is refused, saying where to do it."""
    from tests.bot.test_dashboard import LINK, erased_on_the_dashboard

    client, bot, standin = telegram_monthly
    marta, _first = await subscribed(client, standin)
    before = len(standin.texts(BOSS))
    await marta._post(text_update("/admin dashboard", chat_id=BOSS, user=person(BOSS, "Boss")))
    await standin.wait_for(lambda: len(standin.texts(BOSS)) > before)
    link = LINK.search(standin.texts(BOSS)[-1])[1]

    web_chat_only = settings.model_copy(update={"admins": (f"telegram:{BOSS}",),
                                                "stars_per_unit": {"GBP": Decimal(50)}})
    async with running(web_chat_only) as (elsewhere, _bot):
        assert (await elsewhere.post("/admin/sign-in", data={"link": link})).status_code == 303
        refused = await erased_on_the_dashboard(elsewhere, f"telegram:{CHAT}")
        said = (await elsewhere.get(refused.headers["location"])).text
    assert "Telegram, which this server is not connected to" in said, said
    [payment] = await payments(bot)
    assert payment.user_id is not None and payment.sender_id  # not erased: still known, still subscribed
    assert not standin.called("editUserStarSubscription")

    # `lessonbot learner erase` refuses the same without Telegram's settings, and with them cancels it, then erases.
    import asyncio

    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    for name, value in {"DATABASE_URL": settings.resolved_database_url, "DATA_DIR": str(settings.data_dir),
                        "SECRET_KEY": "test-secret-key-0123456789"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert await asyncio.to_thread(main, ["learner", "erase", f"telegram:{CHAT}", "--yes"]) == 2
    [told] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Nothing was erased")]
    assert told.startswith(f"Nothing was erased: telegram:{CHAT} has a subscription with Telegram, which this command "
                           "cannot cancel without TELEGRAM_BOT_TOKEN")
    assert (await payments(bot))[0].user_id is not None and not standin.called("editUserStarSubscription")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", standin.base_url)
    assert await asyncio.to_thread(main, ["learner", "erase", f"telegram:{CHAT}", "--yes"]) == 0
    [cancel] = standin.called("editUserStarSubscription")
    assert cancel.params["is_canceled"] == "true"
    assert (await payments(bot))[0].user_id is None


async def test_a_stars_subscription_that_ran_out_may_be_bought_again(telegram_monthly):
    """Telegram reports no cancellation: a subscription not renewed simply runs out, and buying again is buying."""
    from sqlalchemy import update

    from storage.courses import Entitlement
    from storage.models import utcnow
    from storage.payments import Payment

    client, bot, standin = telegram_monthly
    marta, _first = await subscribed(client, standin)
    past = utcnow() - timedelta(days=5)
    async with bot.db.transaction() as session:  # weeks on, not renewed: her access ran out
        await session.execute(update(Entitlement).values(expires_at=past))
        await session.execute(update(Payment).values(period_end=past))
    again = await subscription_link(marta, standin)
    assert (await checked(marta, standin, pre_checkout_update(again, user=marta.user)))["ok"] == "true"
    await marta._post(payment_update(standin.pay(again, marta.user), chat_id=CHAT, user=marta.user))
    await bot.settle()
    assert (await payments(bot))[-1].status == PaymentStatus.PAID and standin.called("refundStarPayment") == []
    assert any(entitlement.expires_at > utcnow() for entitlement in await entitlements(bot))


async def test_a_stars_subscription_renews_after_the_chat_was_linked_to_another_learner(telegram_monthly):
    from sqlalchemy import select

    from storage.learners import Learner
    from storage.models import ChannelIdentity, utcnow

    client, bot, standin = telegram_monthly
    marta, first = await subscribed(client, standin)
    # Her other account (another chat with the bot) has a link code; she links this chat to it.
    other = person(4444444, "Marta")
    await marta._post(text_update("/start", chat_id=4444444, user=other))
    await standin.wait_for(lambda: len(standin.texts(4444444)) >= 1)
    await bot.settle()
    async with bot.db.transaction() as session:
        owner = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "4444444"))
        learner = await session.get(Learner, owner) or Learner(user_id=owner)
        session.add(learner)
        learner.link_code, learner.link_code_expires_at = "ABCDEFGHJK", utcnow() + timedelta(minutes=10)
    [linked] = await marta.say("/link ABCDEFGHJK")
    assert linked.startswith("Linked!")

    renewal = standin.renew(first)
    await marta._post(payment_update(renewal, chat_id=CHAT, user=marta.user))
    await bot.settle()
    [payment] = await payments(bot)
    assert payment.user_id == owner and payment.charge_reference == renewal["telegram_payment_charge_id"]
    assert not any("couldn't match" in text for text in standin.texts(CHAT))


async def test_the_invoice_shows_a_course_title_as_written(telegram):
    """The payment sheet's description is plain text: a title's * _ [ ] are shown as they are, not as the escapes
    that keep them from being formatting in a message."""
    from sqlalchemy import update

    from storage.courses import Course

    client, bot, standin = telegram
    title = "Secure_coding *2* [beta] C++"
    async with bot.db.transaction() as session:
        await session.execute(update(Course).where(Course.slug == "passwords-that-hold").values(title=title))
    marta = TelegramLearner(client, standin)
    await marta._post(text_update("/buy passwords-that-hold", chat_id=CHAT, user=marta.user))
    await standin.wait_for(lambda: len(standin.called("sendInvoice")) == 1)
    [sent] = standin.called("sendInvoice")
    assert sent.params["description"] == f"The whole course “{title}”, every lesson and quiz, yours to keep."


async def test_purchases_say_a_stars_subscription_that_ran_out_ended_and_promise_no_renewal(telegram_monthly):
    """Telegram reports no cancellation: Marta cancels in Telegram and her subscription runs out unrenewed. /purchases
    then says it ended on the last day paid for, not that it "renews on" a day gone by."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    from storage.courses import Entitlement
    from storage.models import utcnow
    from storage.payments import Payment

    client, bot, standin = telegram_monthly
    marta, _first = await subscribed(client, standin)
    past = utcnow() - timedelta(days=5)
    async with bot.db.transaction() as session:  # weeks on, not renewed: her access ran out
        await session.execute(update(Entitlement).values(expires_at=past))
        await session.execute(update(Payment).values(period_end=past))
    [listing] = await marta.say("/purchases")
    ended = past.astimezone(ZoneInfo("Europe/Madrid"))
    assert "renews on" not in listing
    assert f", ended on {ended.day} {ended:%B} {ended.year}. Receipt no. LB-" in listing, listing


async def test_a_stars_subscriber_cancels_the_renewal_from_purchases(telegram_monthly):
    """"Cancel renewal" in /purchases, confirmed: the bot cancels the Stars subscription itself
    (editUserStarSubscription, is_canceled), and the period paid for, with the grace, stays open."""
    from zoneinfo import ZoneInfo

    client, bot, standin = telegram_monthly
    marta, first = await subscribed(client, standin)
    [payment] = await payments(bot)
    grace = timedelta(hours=bot.settings.subscription_grace_hours)
    paid_until = datetime.fromtimestamp(first["subscription_expiration_date"], UTC)

    def said(moment: datetime) -> str:
        day = moment.astimezone(ZoneInfo("Europe/Madrid"))
        return f"{day.day} {day:%B} {day.year}"

    [listing] = await marta.say("/purchases")
    assert f", renews on {said(paid_until)}. Receipt no. LB-{payment.id:06d}" in listing
    [asked] = await marta.press("Cancel renewal")
    assert asked == (f"Cancel the renewal of “Passwords that hold”? Nothing more will be charged, and your lessons "
                     f"stay open until {said(paid_until + grace)}.")
    assert not standin.called("editUserStarSubscription")
    [done] = await marta.press("Yes, cancel the renewal")
    assert done == (f"Done: “Passwords that hold” will not renew, and nothing more will be charged. Your lessons stay "
                    f"open until {said(paid_until + grace)}.")
    [cancel] = standin.called("editUserStarSubscription")
    assert cancel.params == {"user_id": str(CHAT), "telegram_payment_charge_id": first["telegram_payment_charge_id"],
                             "is_canceled": "true"}
    assert (await payments(bot))[0].renewal_cancelled_at is not None
    [granted] = await entitlements(bot)
    assert granted.revoked_at is None and granted.expires_at == paid_until + grace

    [listing] = await marta.say("/purchases")
    assert f", ends on {said(paid_until + grace)} (renewal cancelled). Receipt no. LB-{payment.id:06d}" in listing
    sent = [c for c in standin.called("sendMessage") if c.params.get("chat_id") == str(CHAT)][-1]
    assert sent.reply_markup is None or not sent.reply_markup.get("inline_keyboard")


async def test_a_stars_cancellation_telegram_refuses_changes_nothing(telegram_monthly):
    client, bot, standin = telegram_monthly
    marta, _first = await subscribed(client, standin)
    standin.fail("editUserStarSubscription", Fault.server_error())
    await marta.say("/purchases cancel")
    [failed] = await marta.press("Yes, cancel the renewal")
    assert failed.startswith("I couldn't cancel the renewal of “Passwords that hold” just now, so nothing has changed")
    assert (await payments(bot))[0].renewal_cancelled_at is None
    [listing] = await marta.say("/purchases")
    assert ", renews on " in listing


async def test_a_chat_where_telegram_is_not_connected_deletes_no_stars_subscriber_and_says_where(
        telegram_monthly, settings):
    """Marta, subscribed in Stars on Telegram, linked a chat served by a process without Telegram (docker compose's
    `webchat`) and asks there to delete her data: that process cannot cancel the subscription, which would go on
    charging a person no longer known. Nothing is erased, and she is told where to do it; on Telegram it is done."""
    from tests.dialogs.test_linking import CODE
    from tests.support import RecordingChannel, Transcript

    client, bot, standin = telegram_monthly
    marta, _first = await subscribed(client, standin)
    [code_reply] = await marta.say("/link")
    code = CODE.search(code_reply)[1]

    web_chat_only = settings.model_copy(update={"stars_per_unit": {"GBP": Decimal(50)}, "admins": ("test:boss",)})
    channel = RecordingChannel()
    async with running(web_chat_only, channels=[channel]) as (_client, elsewhere):
        web = Transcript(elsewhere, channel, chat="marta-web")
        [linked] = await web.say(f"/link {code}")
        assert linked.startswith("Linked!"), linked
        [refused] = await Transcript(elsewhere, channel, chat="boss").say(f"/admin erase telegram:{CHAT} confirm")
        assert "subscription with Telegram, which this chat's server is not connected to" in refused, refused
        await web.say("/stop")
        said = await web.say("Stop and delete my data", choice="stop:delete")
    assert not standin.called("editUserStarSubscription")
    [payment] = await payments(bot)
    assert payment.user_id is not None and payment.sender_id  # not erased: still known, still subscribed
    assert len(said) == 1 and "Telegram" in said[0] and "/stop" in said[0] and not said[0].startswith("Done"), said

    await marta.say("/stop")
    [done] = await marta.press("Stop and delete my data")
    assert done.startswith("Done: I deleted everything I kept about you")
    [cancel] = standin.called("editUserStarSubscription")
    assert cancel.params["is_canceled"] == "true"
    assert (await payments(bot))[0].user_id is None


async def test_the_last_check_refuses_an_invoice_of_a_course_withdrawn_since_to_all_but_those_in_it(telegram):
    """Invoices sent before the course was unpublished: Telegram's last check refuses the one of someone not in the
    course (it is no longer offered to them, as /buy and its Buy button say), and lets a learner in it pay."""
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    hers = await invoice(marta, standin)
    olga = person(OLGA, "Olga")
    await marta._post(text_update("/buy passwords-that-hold", chat_id=OLGA, user=olga))
    await standin.wait_for(lambda: any(call.params["chat_id"] == str(OLGA) for call in standin.called("sendInvoice")))
    [theirs] = [call for call in standin.called("sendInvoice") if call.params["chat_id"] == str(OLGA)]
    before = len(standin.texts(BOSS))
    await marta._post(text_update("/admin unpublish passwords-that-hold", chat_id=BOSS, user=person(BOSS, "Boss")))
    await standin.wait_for(lambda: len(standin.texts(BOSS)) > before)

    withdrawn = await checked(marta, standin, pre_checkout_update(theirs, user=olga))
    assert withdrawn["ok"] == "false" and "no longer sold" in withdrawn["error_message"]
    kept = await checked(marta, standin, pre_checkout_update(hers, user=marta.user))
    assert kept["ok"] == "true"


async def test_the_last_check_refuses_an_invoice_for_good_of_a_course_sold_by_the_month_since(telegram, tmp_path):
    """An invoice that sells the course for good, and the course priced since at as many Stars a month: paying it
    would open for good what is now sold by the month, so Telegram's last check refuses it as a changed price."""
    client, bot, standin = telegram
    marta = await onboarded(client, standin)
    sent = await invoice(marta, standin)
    await import_sample(bot, monthly_copy(tmp_path))

    changed = await checked(marta, standin, pre_checkout_update(sent, user=marta.user))
    assert changed["ok"] == "false" and "price has changed" in changed["error_message"]
