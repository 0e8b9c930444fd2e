"""The words of the bot's own web pages, in a learner's language: the web chat page around the conversation, and the
public page that says whether a certificate is genuine. The pages are built elsewhere (channels/webchat/web/,
bot/certificate_page.py); their words live here, so they are translated with every other message."""

from __future__ import annotations

from dialogs.i18n import preferred, translator


def web_chat_words(languages: str | None) -> tuple[str, dict[str, str]]:
    """The language chosen for a learner's language or a browser's Accept-Language header, and the chat page's
    words in it, by key. `{command}` and `{status}` are left for the page to fill in."""
    _ = translator(preferred(languages))
    words = {
        "title": "Lessonbot",
        "tagline": _("Short lessons, quick quizzes, answers from your course"),
        "placeholder": _("Write a message…"),
        "your_message": _("Your message"),
        "send": _("Send message"),
        "new_chat": _("New chat"),
        "new_chat_title": _("Forget this conversation and start a new one"),
        "welcome": _("Welcome!"),
        "welcome_hint": _("Say hello, or send {command} to begin.", command="{command}"),
        "hint": _("Enter sends · Shift+Enter for a new line"),
        "connecting": _("Connecting…"),
        "online": _("Online"),
        "offline": _("Offline"),
        "typing": _("Lessonbot is typing…"),
        "bot_said": _("Lessonbot said:"),
        "you_said": _("You said:"),
        "conversation": _("Conversation with Lessonbot"),
        "choices": _("Choices"),
        "new_conversation": _("New conversation"),
        "unreachable": _("Lessonbot can't be reached right now. Check your connection and try again."),
        "retrying": _("Lessonbot can't be reached right now; trying again…"),
        "refused": _("Lessonbot could not take that (error {status}). Please try again.", status="{status}"),
        "document": _("document"),
        "download": _("Download"),
    }
    return _.language, words


def certificate_page_words(languages: str | None) -> tuple[str, dict[str, str]]:
    """The language chosen for a browser's Accept-Language header, and the verification page's words in it, by
    key. `{code}` is left for the page to fill in."""
    _ = translator(preferred(languages))
    words = {
        "title": _("Certificate verification"),
        "valid": _("Valid certificate"),
        "not_found": _("Certificate not found"),
        "not_found_detail": _(
            "No certificate has the code {code}. Check that it was copied exactly as printed on the certificate.",
            code="{code}",
        ),
        "learner": _("Awarded to"),
        "course": _("Course"),
        "date": _("Completed on"),
    }
    return _.language, words
