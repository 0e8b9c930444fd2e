"""What the bot says when it could not do what was asked, in the person's language: the message failed (the pipeline
gives up on it after its retries), or an answer is late (an action call that must answer now, as Rasa's do)."""

from __future__ import annotations

from dialogs.i18n import N_, translator

FAILED = N_("Sorry, something went wrong on my side while handling that. Please try again in a moment.")
LATE = N_("I'm still working on that; the answer will follow in a moment.")


def failed(language: str | None) -> str:
    """The apology for a message that could not be handled; `language`: the person's, when known."""
    return translator(language)(FAILED)


def late(language: str | None) -> str:
    """What an answer that is not ready yet says instead; the answer follows on its own."""
    return translator(language)(LATE)
