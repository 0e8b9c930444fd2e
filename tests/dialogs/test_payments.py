"""Prices as learners read them, paid courses with no way to pay configured, /courses, /purchases, and the admin's
grant and revoke (audited) — through the real pipeline on a recording channel."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.core import Lessonbot
from dialogs.i18n import translator
from dialogs.payments import PaymentDesk
from dialogs.prices import course_label, format_price
from storage.courses import Course
from storage.models import AdminAuditEntry, ChannelIdentity, User, utcnow
from storage.payments import AccessCode, Redeemed, redeem
from tests.dialogs.learning_support import PAID, Learning, import_sample, onboard
from tests.dialogs.payment_support import entitlements
from tests.support import RecordingChannel


@pytest.mark.parametrize(
    ("language", "minor", "currency", "shown"),
    [("en", 990, "EUR", "9.90 EUR"), ("es", 990, "EUR", "9,90 EUR"), ("en", 500, "JPY", "500 JPY"),
     ("en", 1, "XTR", "1 Star"), ("es", 150, "XTR", "150 estrellas"), ("en", 12345, "KWD", "12.345 KWD")],
)
def test_a_price_is_shown_in_the_learners_number_format(language, minor, currency, shown):
    assert format_price(translator(language), minor, currency) == shown


def test_stars_are_priced_as_authored_or_at_the_configured_rate():
    desk = PaymentDesk(stars_per_unit={"EUR": Decimal(55)})
    assert desk.stars_price(Course(price_minor=990, currency="EUR")) == 545  # 9.90 × 55 = 544.5, rounded up
    assert desk.stars_price(Course(price_minor=250, currency="XTR")) == 250
    assert desk.stars_price(Course(price_minor=300, currency="GBP")) is None  # no rate: sold through Stripe
    # by the month: a Stars subscription, up to what Telegram lets one cost (10,000 Stars), else through Stripe
    assert desk.stars_price(Course(price_minor=990, currency="EUR", price_period="month")) == 545
    assert desk.stars_price(Course(price_minor=10_000, currency="XTR", price_period="month")) == 10_000
    assert desk.stars_price(Course(price_minor=20_000, currency="EUR", price_period="month")) is None


def test_a_long_title_keeps_its_price_in_a_button():
    course = Course(title="A" * 80, access="paid", price_minor=990, currency="EUR")
    label = course_label(translator("en"), course)
    assert len(label) <= 60 and label.endswith(" — 9.90 EUR")


@pytest.fixture
async def shop(settings):
    channel = RecordingChannel()
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    await import_sample(bot)
    await import_sample(bot, PAID)
    yield bot, Learning(bot, channel), Learning(bot, channel, chat="boss")
    await bot.stop()


async def test_without_a_way_to_pay_the_learner_hears_how_to_get_access(shop):
    bot, ann, _boss = shop
    await onboard(ann, course="Passwords that hold — 3.00 GBP")
    [answer] = await ann.say("/buy")
    assert answer.startswith("“Passwords that hold” can't be bought here yet. To get access, ask")
    [listing] = await ann.say("/courses")
    assert "• Passwords that hold — 3.00 GBP" in listing and "• Spot the phish, five minutes a day — free" in listing
    [unknown] = await ann.say("/buy knitting")
    assert unknown.startswith("There is no paid course called 'knitting'. Courses for sale: passwords-that-hold.")
    [nothing] = await ann.say("/purchases")
    assert nothing.startswith("You haven't bought anything yet.")


async def test_an_admin_grants_and_revokes_and_every_attempt_is_audited(shop):
    bot, ann, boss = shop
    await onboard(ann, course="Passwords that hold — 3.00 GBP")
    [usage] = await boss.say("/admin grant test:ann")
    assert usage.startswith("Usage: /admin grant USER COURSE [DAYS]")
    [granted] = await boss.say("/admin grant test:ann passwords-that-hold 30")
    assert granted.startswith("Granted “Passwords that hold” to learner ") and " until " in granted
    [listing] = await ann.say("/courses")
    assert "• Passwords that hold — yours" in listing
    assert ann.labels() == ["Buy Passwords that hold"]  # open for 30 days: buying it for good is still buying
    [for_good] = await boss.say("/admin grant test:ann passwords-that-hold")
    assert for_good.startswith("Granted “Passwords that hold” to learner ") and " until " not in for_good
    [owned] = await ann.say("/buy")
    assert owned.startswith("You already have the whole of “Passwords that hold”.")
    [revoked] = await boss.say("/admin revoke test:ann passwords-that-hold")
    assert revoked.startswith("Revoked 2 entitlements to “Passwords that hold”")
    assert all(entitlement.revoked_at is not None for entitlement in await entitlements(bot))
    [denied] = await ann.say("/admin grant test:ann passwords-that-hold")
    assert denied.startswith("Admin commands are for admins only.")
    async with bot.db.sessions() as session:
        audit = [(row.identity, row.command, row.outcome)
                 for row in await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))]
    assert audit == [("test:boss", "grant", "invalid"), ("test:boss", "grant", "ok"), ("test:boss", "grant", "ok"),
                     ("test:boss", "revoke", "ok"), ("test:ann", "grant", "denied")]


async def test_an_admin_grants_a_whatsapp_learner_named_by_their_number_as_in_admins(settings):
    admins, whatsapp = RecordingChannel(), RecordingChannel(name="whatsapp")
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [admins, whatsapp])
    try:
        await import_sample(bot, PAID)
        await Learning(bot, whatsapp, chat="+15551234567").say("/start")
        boss = Learning(bot, admins, chat="boss")
        [granted] = await boss.say("/admin grant whatsapp:15551234567 passwords-that-hold")  # as ADMINS reads it
        assert granted.startswith("Granted “Passwords that hold” to learner "), granted
        [revoked] = await boss.say("/admin revoke whatsapp:0015551234567 passwords-that-hold")
        assert revoked.startswith("Revoked 1 entitlement to “Passwords that hold”"), revoked
    finally:
        await bot.stop()


async def test_an_access_code_opens_a_course_for_as_many_learners_as_it_says(shop):
    bot, ann, boss = shop
    ben = Learning(bot, ann.channel, chat="ben")
    await onboard(ann, course="Passwords that hold — 3.00 GBP")
    [bad] = await boss.say("/admin code passwords-that-hold many")
    assert bad.startswith("Usage: /admin code COURSE [LEARNERS] [DAYS]")
    [made] = await boss.say("/admin code passwords-that-hold 1 30")
    code = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    assert made.startswith(f"Access code {code} opens “Passwords that hold” for 1 learner")

    [wrong] = await ann.say("/redeem LB-NOPE-NOPE")
    assert wrong.startswith("That is not an access code I know.")
    typed = code.lower().replace("-", " ", 1).replace("-", "")  # "lb 7k2q9xwm": as read off a card
    accepted, lesson = await ann.say(f"/redeem {typed}")
    assert accepted == "🎟️ Code accepted: “Passwords that hold” is open to you."
    assert lesson.startswith("📘 Lesson 1 of 3")
    [again] = await ann.say(f"/redeem {code}")
    assert again.startswith("You already have “Passwords that hold”.")
    [used_up] = await ben.say(f"/redeem {code}")
    assert used_up.startswith("This code has been used up.")
    [granted] = await entitlements(bot)
    assert granted.source == "code" and granted.expires_at is not None
    # An admin takes the access back: the code sent again says so, not that the course is hers.
    [revoked] = await boss.say("/admin revoke test:ann passwords-that-hold")
    assert revoked.startswith("Revoked 1 entitlement")
    [ended] = await ann.say(f"/redeem {code}")
    assert ended == ("You used this code before, and the access it gave to “Passwords that hold” has ended. Ask "
                     "whoever gave it to you for a new one.")


async def test_a_learner_redeeming_a_code_twice_at_once_takes_one_use(shop):
    """Two linked chats of one learner send the same code at the same moment: each transaction finds no redemption
    yet and takes a use; the one whose entitlement is there first keeps it, the other gives its use back."""
    bot, ann, boss = shop
    await onboard(ann, course="Passwords that hold — 3.00 GBP")
    [made] = await boss.say("/admin code passwords-that-hold 50")
    assert made.startswith("Access code LB-")
    async with bot.db.sessions() as session:
        code = await session.scalar(select(AccessCode))
        user_id = (await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann"))).user_id

    async def redeemed_by(user: int) -> Redeemed:
        async with bot.db.transaction() as session:
            return await redeem(session, await session.get(AccessCode, code.id), user, utcnow())

    for round_number in range(5):
        learner = user_id if round_number == 0 else (await _new_learner(bot, f"learner {round_number}"))
        outcomes = await asyncio.gather(redeemed_by(learner), redeemed_by(learner))
        assert sorted(outcomes) == [Redeemed.ALREADY, Redeemed.OK]
    async with bot.db.sessions() as session:
        assert (await session.get(AccessCode, code.id)).uses_left == 50 - 5
    # at the last use: the learner's second chat hears it is theirs already, not that the code is used up
    for round_number in range(5):
        async with bot.db.transaction() as session:
            (await session.get(AccessCode, code.id)).uses_left = 1
        learner = await _new_learner(bot, f"last {round_number}")
        outcomes = await asyncio.gather(redeemed_by(learner), redeemed_by(learner))
        assert sorted(outcomes) == [Redeemed.ALREADY, Redeemed.OK]


async def _new_learner(bot: Lessonbot, name: str) -> int:
    async with bot.db.transaction() as session:
        user = User(display_name=name)
        session.add(user)
        await session.flush()
        return user.id


async def test_a_code_stops_at_its_expiry_or_when_disabled_and_counts_its_uses(shop):
    from datetime import timedelta

    from storage.models import utcnow
    from storage.payments import AccessCode, access_code, disable_code

    bot, ann, boss = shop
    ben, cy = Learning(bot, ann.channel, chat="ben"), Learning(bot, ann.channel, chat="cy")
    [bad] = await boss.say("/admin code passwords-that-hold 5 until=yesterday")
    assert bad.startswith("Usage: /admin code COURSE [LEARNERS] [DAYS] [until=DATE]")
    [made] = await boss.say("/admin code passwords-that-hold 5 until=2099-01-31")
    code = re.search(r"LB-[A-Z0-9]{4}-[A-Z0-9]{4}", made)[0]
    assert made.endswith("It can be redeemed until 2099-02-01 00:00 UTC.")
    [accepted] = await ann.say(f"/redeem {code}")
    assert accepted.startswith("🎟️ Code accepted")
    async with bot.db.transaction() as session:
        row = await access_code(session, code)
        assert (row.uses, row.used) == (5, 1)
        row.expires_at = utcnow() - timedelta(minutes=1)
    [expired] = await ben.say(f"/redeem {code}")
    assert expired.startswith("This code expired on ")
    async with bot.db.transaction() as session:
        row = await session.scalar(select(AccessCode))
        row.expires_at = None
        assert await disable_code(session, row, utcnow())
        assert not await disable_code(session, row, utcnow())
    [withdrawn] = await cy.say(f"/redeem {code}")
    assert withdrawn.startswith("This code has been withdrawn.")
    [still] = await ann.say(f"/redeem {code}")
    assert still.startswith("You already have “Passwords that hold”.")
    assert len(await entitlements(bot)) == 1


@pytest.mark.parametrize("command", [
    "/admin refund ²", "/admin refund 99999999999999999999", "/admin grant ² passwords-that-hold",
    "/admin grant test:ann passwords-that-hold ³", "/admin code passwords-that-hold ³", "/admin broadcast status ²",
])
async def test_a_number_an_admin_types_is_ascii_digits_within_an_id_or_the_usage_is_shown(shop, command):
    bot, ann, boss = shop
    await onboard(ann, course="Passwords that hold — 3.00 GBP")
    [answer] = await boss.say(command)
    assert not answer.startswith("Sorry") and ("Usage" in answer or answer.startswith("No learner")), answer


async def test_grant_and_revoke_refuse_words_they_do_not_take(shop):
    bot, ann, boss = shop
    await ann.say("hello")
    [grant] = await boss.say("/admin grant test:ann passwords-that-hold 3 weeks")
    assert grant.startswith("Usage: /admin grant USER COURSE [DAYS]")
    await boss.say("/admin grant test:ann passwords-that-hold")
    [revoke] = await boss.say("/admin revoke test:ann passwords-that-hold everything please")
    assert revoke.startswith("Usage: /admin revoke USER COURSE")
    [given] = await entitlements(bot)
    assert given.expires_at is None and given.revoked_at is None  # only the grant as its usage writes it ran


async def test_days_are_at_most_ten_years_and_an_expiry_past_is_said_so(shop):
    bot, ann, boss = shop
    await ann.say("hello")
    for command, usage in (("/admin code passwords-that-hold 1 100000", "Usage: /admin code"),
                           ("/admin code passwords-that-hold 1 0", "Usage: /admin code"),
                           ("/admin grant test:ann passwords-that-hold 4000", "Usage: /admin grant")):
        [refused] = await boss.say(command)
        assert refused.startswith(f"DAYS is a whole number from 1 to 3650.\n{usage}"), (command, refused)
    [past] = await boss.say("/admin code passwords-that-hold until=2020-01-01")
    assert past == ("until=2020-01-01 is not in the future: give a day to come (2027-01-31) or a number of days "
                    "(30d).")
    assert (await boss.say("/admin code Passwords-That-Hold 1 3650"))[0].startswith("Access code ")
    assert (await boss.say("/admin grant test:ann Passwords-That-Hold 3650"))[0].startswith("Granted ")
    assert len(await entitlements(bot)) == 1
