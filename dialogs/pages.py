"""The words of the bot's own web pages, in a learner's language: the web chat page around the conversation, and the
public page that says whether a certificate is genuine; and what a channel says itself before the dialogs answer (a
Slack acknowledgement). The pages and the acknowledgements are built elsewhere (channels/webchat/web/,
bot/certificate_page.py, channels/slack/routes.py); their words live here, so they are translated with every other
message."""

from __future__ import annotations

from collections.abc import Callable

from dialogs.i18n import N_, preferred, translator


def web_chat_words(languages: str | None) -> tuple[str, dict[str, str]]:
    """The language chosen for a learner's language or a browser's Accept-Language header, and the chat page's
    words in it, by key. `{command}`, `{status}`, `{count}` and `{limit}` are left for the page to fill in."""
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
        "polling": _("Online (updates every few seconds)"),
        "too_long": _("This message is {count} characters long; the limit is {limit}. Please shorten it.",
                      count="{count}", limit="{limit}"),
        "too_many": _("Lessonbot is getting too many messages right now. Please wait a moment and try again."),
        "new_chat_confirm": _("Start a new chat? This chat and its progress can't be opened again from this "
                              "browser."),
        "new_message": _("New message"),
    }
    return _.language, words


def slack_words(language: str | None) -> dict[str, str]:
    """What the Slack channel says itself, where the dialogs do not answer (a note after an acknowledgement), in a
    learner's language, by key; `{command}` and `{known}` are left for the channel to fill in."""
    _ = translator(language)
    return {
        "direct_answer": _("Your answer is on its way to your direct messages with Lessonbot."),
        "unknown_command": _("Lessonbot does not know {command}. Try {known}.", command="{command}", known="{known}"),
        "not_installed": _("Lessonbot is not installed in this workspace (any more). Ask an admin to install it "
                           "again."),
    }


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


# The admins' dashboard (bot/dashboard/): every text it shows, in English, as the dashboard's code writes it.
DASHBOARD_WORDS: tuple[str, ...] = (
    N_("Erased: {messages} messages and {replies} replies went with the rest of that learner's data."),
    N_("No such page"),
    N_("Choose a page from the menu."),
    N_("No such figure"),
    N_("Choose a CSV link on the page."),
    N_("Not done"),
    N_("This form is out of date. Reload the page and try again."),
    N_("The form is larger than this server takes, or did not arrive whole."),
    N_("No such learner"),
    N_("They may have been erased."),
    N_("lesson"),
    N_("answer"),
    N_("wrong answer"),
    N_("message"),
    N_("(no name)"),
    N_("No such course"),
    N_("Choose a course from the list."),
    N_("Sign out"),
    N_("name"),
    N_("addresses"),
    N_("status"),
    N_("language"),
    N_("time zone"),
    N_("streak"),
    N_("points"),
    N_("Requeued {n} dead letters."),
    N_("Export their data (JSON)"),
    N_("delete everything kept about this learner, as their own /stop → delete does"),
    N_("Erase"),
    N_("when"),
    N_("what"),
    N_("detail"),
    N_("Granted {course}."),
    N_("Give a course"),
    N_("for how many days (empty: for good)"),
    N_("Grant"),
    N_("Tick the box to confirm."),
    N_("This learner holds admin roles, which only an owner may take away: an owner revokes them first (/admin role "
       "list shows them), then the erasure can go ahead."),
    N_("This learner holds admin roles: only an owner may export their data."),
    N_("This learner has a subscription with {platforms}, which this server is not connected to: erased here, they "
       "would go on being charged for it. Erase them from the dashboard of the server that takes {platforms}'s "
       "webhooks, or with /admin erase in a chat."),
    N_("Not done: someone else now"),
    N_("The learner this page was about has been erased, and their number now belongs to someone else. Nothing was "
       "done. Find the learner again on the learners page."),
    N_("Days: a number from 1 to {most}, or empty."),
    N_("course"),
    N_("title"),
    N_("started"),
    N_("completed"),
    N_("Timeline (newest first)"),
    N_("Courses"),
    N_("Actions"),
    N_("Who"),
    N_("Signed out"),
    N_("To sign in again, send /admin dashboard to the bot in a private chat."),
    N_("Sign in first"),
    N_("The dashboard is for admins. Send /admin dashboard to the bot in a private chat for a sign-in link."),
    N_("Not for your role"),
    N_("Your admin role does not include this page. An owner can change your role with /admin role grant."),
    N_("Sign in"),
    N_("Not signed in"),
    N_("Sign in on the page the bot's link opens, not from another site's page."),
    N_("This link does not work"),
    N_("It was used already, has expired, or was never sent. Send /admin dashboard to the bot in a private "
       "chat for a new one."),
    N_("Not signed out"),
    N_("Lessonbot dashboard"),
    N_("Sign in with the link the bot sent you. It works once, for 10 minutes."),
    N_("Messages in and replies out, a day"),
    N_("Learners"),
    N_("Active learners by channel"),
    N_("Delivery health"),
    N_("Dead letters (newest first)"),
    N_("agreed"),
    N_("set up"),
    N_("lesson done"),
    N_("first quiz"),
    N_("half the course"),
    N_("course done"),
    N_("The way through"),
    N_("Completion per course"),
    N_("Quiz accuracy per lesson"),
    N_("The hardest questions, with their wrong answers"),
    N_("Daily active learners"),
    N_("Current streaks"),
    N_("Weekly cohorts: who kept learning"),
    N_("Broadcasts and their reach"),
    N_("Reminder templates"),
    N_("The most asked topics"),
    N_("Questions asked"),
    N_("Answered and declined, a day"),
    N_("Declined most often: what the course could add"),
    N_("Find a learner"),
    N_("measure"),
    N_("learners"),
    N_("channel"),
    N_("today"),
    N_("7 days"),
    N_("30 days"),
    N_("day"),
    N_("messages in"),
    N_("replies out"),
    N_("state"),
    N_("replies"),
    N_("waiting"),
    N_("429 now"),
    N_("429 in 24 h"),
    N_("dead letters"),
    N_("id"),
    N_("to"),
    N_("tries"),
    N_("error"),
    N_("written"),
    N_("Replies the platform refused for good, or that ran out of tries."),
    N_("stage"),
    N_("lessons"),
    N_("enrolled"),
    N_("completion"),
    N_("median days"),
    N_("answers"),
    N_("right"),
    N_("question"),
    N_("wrong answers given most"),
    N_("Questions with at least {n} answers, the least often right first."),
    N_("Spaced review"),
    N_("learners who wrote"),
    N_("days in a row"),
    N_("week joined"),
    N_("Of the learners who joined each week, how many took a lesson in that week (week 0) and each week after."),
    N_("created"),
    N_("recipients"),
    N_("queued"),
    N_("kind"),
    N_("template"),
    N_("delivered"),
    N_("came back"),
    N_("rate"),
    N_("bandit's choice"),
    N_("no reminder (held out)"),
    N_("Came back: came back to learn within two hours of the reminder. The bandit's choice is the template with the "
       "best expected rate; it still tries the others now and then. No reminder: learners due one who were left "
       "without it on purpose (NUDGE_HOLDOUT); a template's rate above theirs is what the reminder itself did."),
    N_("not sent"),
    N_("Not sent: reminders decided but never sent, and why, as far back as the reminder log goes. Quiet hours, a "
       "pause or /stop hold a reminder back before it is decided: those are not counted."),
    N_("outside the platform's window for messages the learner did not ask for (WhatsApp: 24 hours after they last "
       "wrote), with no template configured: set TWILIO_TEMPLATE_CONTENT_SID"),
    N_("held out on purpose (NUDGE_HOLDOUT)"),
    N_("queued but never delivered (the platform refused it for good, or a pause or /stop cancelled it)"),
    N_("questions"),
    N_("The lesson each answer drew on first."),
    N_("outcome"),
    N_("asked"),
    N_("answered"),
    N_("declined"),
    N_("allowance spent"),
    N_("question (as first asked)"),
    N_("Each under the course whose lessons came nearest to it."),
    N_("times"),
    N_("last asked"),
    N_("last active"),
    N_("A name's beginning (any case), a number, or an address such as telegram:12345."),
    N_("Sales and refunds by course and currency"),
    N_("Overview"),
    N_("Learning"),
    N_("Engagement"),
    N_("Knowledge"),
    N_("Revenue"),
    N_("agreed to take part"),
    N_("new today"),
    N_("new in 7 days"),
    N_("new in 30 days"),
    N_("Active learners in the last 7 days, by channel"),
    N_("waiting to be sent"),
    N_("being sent"),
    N_("held until the person writes (WhatsApp's window) or comes back from a pause"),
    N_("held back by a platform's 429 now"),
    N_("sent in the last 24 hours after a 429"),
    N_("Learners at each stage"),
    N_("Share of quiz answers right, per lesson (%)"),
    N_("value"),
    N_("Learners who wrote, a day"),
    N_("Learners by current streak (days)"),
    N_("Questions answered from each lesson"),
    N_("declined (not in the material)"),
    N_("not looked up (the learner's allowance was spent)"),
    N_("outside what they may read (no course yet, none free in the group, a lesson past a free preview)"),
    N_("not looked up (the course is not indexed for questions: import it again)"),
    N_("name, or channel:id"),
    N_("Find"),
    N_("currency"),
    N_("sales"),
    N_("amount"),
    N_("refunds"),
    N_("refunded"),
    N_("Sales include those refunded since; the amount counts every charge, a subscription's renewals too; amounts in "
       "each currency's major unit."),
    N_("renewals"),
    N_("reviews due now"),
    N_("cards reviewed again"),
    N_("of those, recalled at the latest review"),
    N_("week {n}"),
    N_("No learner found."),
    N_("Requeue all dead letters"),
    N_("Sales per course"),
    N_("The numbers"),
    N_("Nothing yet."),
    N_("Counted at {time} UTC, and again every 5 minutes."),
)


def dashboard_words(languages: str | None) -> tuple[str, Callable[..., str]]:
    """The language chosen for a browser's Accept-Language header, and a function that gives one of
    DASHBOARD_WORDS in it, its placeholders filled in as they are (the page escapes them for HTML)."""
    _ = translator(preferred(languages))

    def word(english: str, **values: object) -> str:
        text = _(english)
        return text.format(**values) if values else text

    return _.language, word
