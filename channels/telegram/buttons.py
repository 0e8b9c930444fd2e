"""Choices as Telegram inline keyboards, and a pressed button back into the choice it stands for.

Telegram returns a button's `callback_data` when it is pressed, and allows it only 1-64 bytes of UTF-8
(https://core.telegram.org/bots/api#inlinekeyboardbutton). A choice's value that fits travels as it is. A longer
(or empty) value travels as `#button:<index>`; when that button is pressed, the callback query still carries the
message with its keyboard, so the button's label is known and reaches the dialog as if the learner had typed it, the
same way a WhatsApp learner answers with a choice's words. Nothing has to be remembered between sending and pressing,
so any process may receive the press, after any restart.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import InlineKeyboardButtonLimit

from bot.messages import Choice, Link

MAX_CALLBACK_DATA_BYTES = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA  # 64
LABEL_ONLY = "#button:"


def callback_data(value: str, index: int) -> str:
    """What Telegram carries for one choice: its value, or a reference to the button when the value cannot fit."""
    if value and len(value.encode()) <= MAX_CALLBACK_DATA_BYTES and not value.startswith(LABEL_ONLY):
        return value
    return f"{LABEL_ONLY}{index}"


def keyboard(choices: Sequence[Choice], links: Sequence[Link] = ()) -> InlineKeyboardMarkup | None:
    """One button a row (labels are often whole sentences), in the dialog's order: the links first (a URL button
    opens the page, nothing comes back), then the choices."""
    if not choices and not links:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(link.label, url=link.url)] for link in links]
        + [[InlineKeyboardButton(choice.label, callback_data=callback_data(choice.value, index))]
           for index, choice in enumerate(choices)]
    )


def pressed(data: str, markup: InlineKeyboardMarkup | None) -> tuple[str | None, str | None]:
    """(choice value, button label) for a press; the value is None when the button only carried a reference.

    The label is None when the message's keyboard is not in the update (Telegram leaves it out for messages it can
    no longer show the bot); the reference itself is then the choice pressed, one no question takes
    (channels/telegram/updates.py).
    """
    label = None
    for row in markup.inline_keyboard if markup is not None else ():
        for button in row:
            if button.callback_data == data:
                label = button.text
                break
    if data.startswith(LABEL_ONLY):
        return None, label
    return data, label
