"""Telegram's last check before charging Stars (pre_checkout_query) is answered within its 10 seconds whatever the
buyer's chat is doing: while a turn there waits for a model's answer, and while a backlog of replies goes out there
at Telegram's pace; and while other learners' turns hold every place the worker has (WORKER_CONCURRENCY). Real
webhook requests through the app; the Bot API and the model are the stand-ins, which hold the model's answer for as
long as the test says."""

from __future__ import annotations

import asyncio
import threading
import time

from authoring.format import load_course
from authoring.indexing import ingest_course
from bot.config import knowledge_settings
from standins.openai import MODEL
from standins.telegram import payment_update, pre_checkout_update, text_update
from tests.dialogs.learning_support import PAID, import_sample
from tests.dialogs.test_payments_stars import checked, invoice, marta_update, onboarded, pays, selling_in_stars
from tests.dialogs.test_telegram_transcript import CHAT
from tests.support import openai, running, standin  # noqa: F401 (the fixtures)

TELEGRAM_WAITS = 10.0  # seconds Telegram waits for the answer before it cancels the payment


def answers(standin) -> int:
    return len(standin.called("answerPreCheckoutQuery"))


async def test_a_check_is_answered_while_the_buyers_turn_waits_for_a_model(settings, standin, openai):
    answering = selling_in_stars(settings, standin).model_copy(update={
        "openai_base_url": openai.base_url, "openai_api_key": "sk-test", "openai_model": MODEL})
    async with running(answering) as (client, bot):
        await import_sample(bot, PAID)
        await asyncio.to_thread(ingest_course, load_course(PAID), knowledge_settings(answering))
        marta = await onboarded(client, standin)
        sent = await invoice(marta, standin)
        openai.hold_chat = threading.Event()
        try:
            # Marta asks a question; the model takes its time (held by the stand-in) ...
            before = len(standin.texts(CHAT))
            await marta._post(marta_update(marta, "What makes a password hold up: length or cleverness?"))
            assert await asyncio.to_thread(openai.chat_waits.wait, 30)
            # ... she sends /buy again (in line behind the question), and meanwhile presses Pay on the first invoice:
            # the check is answered while her question is still unanswered.
            await marta._post(marta_update(marta, "/buy"))
            asked = time.monotonic()
            answer = await checked(marta, standin, pre_checkout_update(sent, user=marta.user))
            took = time.monotonic() - asked
            assert answer["ok"] == "true" and took < TELEGRAM_WAITS
            assert not openai.hold_chat.is_set() and len(standin.texts(CHAT)) == before
        finally:
            openai.hold_chat.set()
        # The question is answered after all, then the /buy; the payment Telegram then reports is the one the check
        # approved, and unlocks the course.
        await standin.wait_for(lambda: len(standin.called("sendInvoice")) == 2)
        assert "password" in standin.texts(CHAT)[before].lower()
        paid = standin.pay(sent, marta.user)
        after = len(standin.texts(CHAT))
        await marta._post(payment_update(paid, chat_id=CHAT, user=marta.user))
        await standin.wait_for(lambda: any(text.startswith("✅ Payment received")
                                           for text in standin.texts(CHAT)[after:]))
        assert answers(standin) == 1


BACKLOG = 12  # replies in line in Marta's chat, one a second at Telegram's pace


async def test_a_check_is_answered_ahead_of_a_backlog_of_paced_replies_in_the_buyers_chat(settings, standin):
    unpaced = selling_in_stars(settings, standin)
    async with running(unpaced) as (client, bot):  # onboarded and offered the course without waiting for the pace
        await import_sample(bot, PAID)
        marta = await onboarded(client, standin)
        sent = await invoice(marta, standin)
        await bot.settle()
    async with running(unpaced.model_copy(update={"outbox_paced": True})) as (client, bot):
        marta.client = client
        before = len(standin.texts(CHAT))
        for _ in range(BACKLOG):
            await marta._post(marta_update(marta, "/help"))
        await standin.wait_for(lambda: len(standin.texts(CHAT)) > before)  # the backlog is going out
        asked = time.monotonic()
        answer = await checked(marta, standin, pre_checkout_update(sent, user=marta.user))
        took = time.monotonic() - asked
        behind = before + BACKLOG - len(standin.texts(CHAT))
        assert answer["ok"] == "true" and took < TELEGRAM_WAITS
        assert behind >= BACKLOG // 2, f"answered after {BACKLOG - behind} of {BACKLOG} paced replies"


async def test_a_check_delivered_twice_is_answered_once_and_the_payment_then_settles(settings, standin):
    async with running(selling_in_stars(settings, standin)) as (client, bot):
        await import_sample(bot, PAID)
        marta = await onboarded(client, standin)
        sent = await invoice(marta, standin)
        update = pre_checkout_update(sent, user=marta.user)
        await asyncio.gather(marta._post(update), marta._post(update))  # Telegram's redelivery: the same update
        await standin.wait_for(lambda: answers(standin) == 1)
        await bot.settle()
        assert answers(standin) == 1 and standin.called("answerPreCheckoutQuery")[0].params["ok"] == "true"
        _paid, (confirmed, _lesson) = await pays(marta, standin, sent)  # a new check (a new update), then the payment
        assert confirmed.startswith("✅ Payment received") and answers(standin) == 2



ANA, LUIS = 5555555, 6666666  # two more learners, in chats of their own


async def test_a_check_is_answered_while_every_worker_slot_waits_for_a_model(settings, standin, openai):
    """WORKER_CONCURRENCY conversations at once, each a turn waiting for the model: the check waits for no slot."""
    answering = selling_in_stars(settings, standin).model_copy(update={
        "openai_base_url": openai.base_url, "openai_api_key": "sk-test", "openai_model": MODEL,
        "worker_concurrency": 2})
    async with running(answering) as (client, bot):
        await import_sample(bot, PAID)
        await asyncio.to_thread(ingest_course, load_course(PAID), knowledge_settings(answering))
        marta = await onboarded(client, standin)
        others = [await onboarded(client, standin, chat=chat, name=name) for chat, name in ((ANA, "Ana"),
                                                                                           (LUIS, "Luis"))]
        sent = await invoice(marta, standin)
        openai.hold_chat = threading.Event()
        try:
            # Ana and Luis each ask a question; the model holds both answers: every slot holds a turn ...
            asked_before, heard = len(openai.chat_requests), [len(standin.texts(other.chat)) for other in others]
            for other in others:
                await other._post(text_update("What makes a password hold up: length or cleverness?",
                                              chat_id=other.chat, user=other.user))
            await standin.wait_for(lambda: len(openai.chat_requests) == asked_before + 2, timeout=30)
            # ... and Marta presses Pay: the check is answered while both are still waiting.
            asked = time.monotonic()
            answer = await checked(marta, standin, pre_checkout_update(sent, user=marta.user))
            took = time.monotonic() - asked
            assert answer["ok"] == "true" and took < TELEGRAM_WAITS
            assert not openai.hold_chat.is_set()
            assert [len(standin.texts(other.chat)) for other in others] == heard  # both still waiting
        finally:
            openai.hold_chat.set()
        # Both questions are answered after all.
        await standin.wait_for(lambda: all(len(standin.texts(other.chat)) > count
                                           for other, count in zip(others, heard, strict=True)), timeout=30)
        assert all("password" in standin.texts(other.chat)[count].lower()
                   for other, count in zip(others, heard, strict=True))
