"""Prices as a learner reads them, and the buttons that sell a course: one place for both, so the course choice,
the end of the free preview, /buy and /courses show the same price the same way.

A price is kept in the currency's minor unit (storage/courses.py). It is shown in the learner's language's number
format with the ISO code after it ("9.90 EUR", "9,90 EUR"), Telegram Stars as "150 Stars", and a course sold by the
month as "9.90 EUR a month".
"""

from __future__ import annotations

from bot.messages import Markup
from dialogs.i18n import Translator
from storage.courses import Course, major_units

STARS = "XTR"  # Telegram Stars: whole Stars, sold inside Telegram
MONTH = "month"  # Course.price_period of a course sold as a monthly subscription
BUY = "pay:buy"  # a pressed "Buy" button: "pay:buy:<course slug>"
_DECIMAL_COMMA = {"es", "pt", "fr", "de", "it"}  # languages that write 9,90


def format_price(_: Translator, minor_units: int, currency: str) -> str:
    """`minor_units` of `currency` in the learner's number format: 990 EUR → "9.90 EUR" (en), "9,90 EUR" (es)."""
    if currency == STARS:
        return _.plural("{n} Star", "{n} Stars", minor_units)
    amount = major_units(minor_units, currency, decimal_mark="," if _.language in _DECIMAL_COMMA else ".")
    return f"{amount} {currency}"


def format_charge(_: Translator, minor_units: int, currency: str, period: str | None) -> str:
    """A price and how often it is charged: "9.90 EUR" once, "9.90 EUR a month" for a subscription."""
    price = format_price(_, minor_units, currency)  # digits, a decimal mark and a code: nothing to escape
    return Markup(_("{price} a month", price=Markup(price))) if period == MONTH else price


def course_price(_: Translator, course: Course) -> str | None:
    """A paid course's price as shown, or None for a free course (or one imported without a price)."""
    if course.is_free or course.price_minor is None or not course.currency:
        return None
    return format_charge(_, course.price_minor, course.currency, course.price_period)


def course_label(_: Translator, course: Course, *, limit: int = 60) -> str:
    """A course as a choice in a list: its title, and its price when it has one ("Passwords that hold — 3.00 GBP")."""
    price = course_price(_, course)
    if price is None:
        return course.title[:limit]
    suffix = f" — {price}"
    return course.title[: max(limit - len(suffix), 10)] + suffix


def buy_choices(_: Translator, course: Course, *, later: str) -> list[tuple[str, str]]:
    """"Buy — 9.90 EUR" and "Later" (whose value is `later`), for a paid course; nothing for a free one."""
    price = course_price(_, course)
    if price is None:
        return []
    return [(_("Buy — {price}", price=price), f"{BUY}:{course.slug}"), (_("Later"), later)]
