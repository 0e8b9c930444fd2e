"""The conversations. Adding one is a new module here and a line in the lists below.

- COMMANDS: slash commands and their plain-word synonyms (checked in this order; /help lists them in it).
- BUTTONS: handlers for pressed choices by the prefix of their value ("lesson:next" → lessons), so a button works
  however late it is pressed (once dialogs/choices.py says it was offered to that person). Choices that answer a
  flow's question need no entry: the flow reads them.
- FLOWS: the step machines of dialogs/flow.py, registered by name.

A message nothing else expects goes to the question answerer (dialogs/ask.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dialogs import (
    access_codes,
    admin,
    ask,
    certificate,
    flow,
    greeting,
    home,
    language,
    lessons,
    linking,
    onboarding,
    pause,
    payments,
    personal,
    progress,
    purchases,
    quiz,
    review,
    settings,
    subscriptions,
    teams,
)
from dialogs.i18n import N_
from dialogs.turn import Command, Turn

COMMANDS: tuple[Command, ...] = (
    *greeting.COMMANDS,
    Command("next", lessons.next_command, N_("the next part of your lesson, its quiz, or the next lesson"),
            synonyms=("next", "more", "continue", "go", "siguiente", "mas", "continuar", "seguir", "proximo",
                      "mais")),
    Command("later", lessons.later_command, N_("stop here for now; your place is saved"),
            synonyms=("later", "luego", "mas tarde", "despues", "depois", "mais tarde"), listed=False),
    Command("review", review.review, N_("answer the questions that are due for review"),
            synonyms=("review", "repasar", "repaso", "revisar", "revisao")),
    Command("ask", ask.ask_command, N_("ask a question about your course (or just type it)")),
    Command("progress", progress.show, N_("lessons done, quiz accuracy, streak and points"),
            synonyms=("progress", "progreso", "progresso", "stats")),
    Command("settings", settings.show, N_("change your name, time zone, lesson time, days, course or goal"),
            synonyms=("settings", "ajustes", "configuracion", "configuracoes", "preferencias")),
    Command("pause", pause.pause, N_("pause the daily lessons (/pause 7 for a week)"),
            synonyms=("pause", "pausa", "pausar"), plain_args=pause.DAYS),
    Command("resume", pause.resume_lessons, N_("turn the daily lessons back on"),
            synonyms=("resume", "reanudar", "retomar", "continuar lecciones")),
    Command("stop", pause.stop, N_("stop the lessons, or delete everything I keep about you"),
            synonyms=("stop", "parar", "detener", "basta")),
    Command("language", language.language, N_("choose the language I write in"),
            synonyms=("language", "idioma", "lingua")),
    Command("retake", review.retake, N_("answer again the quiz questions you missed, for the certificate"),
            listed=False),
    Command("certificate", certificate.resend, N_("get your course certificates again"),
            synonyms=("certificate", "certificado")),
    Command("link", linking.link, N_("continue your lessons on another app")),
    Command("export", personal.export, N_("get everything I keep about you, as a file"),
            synonyms=("export", "my data", "mis datos", "exportar")),
    Command("courses", payments.courses_command, N_("every course, with its price"),
            synonyms=("courses", "cursos")),
    Command("buy", payments.buy_command, N_("buy the full course (/buy COURSE for another one)"),
            synonyms=("buy", "comprar")),
    Command("purchases", purchases.purchases_command,
            N_("what you bought, with receipts (/purchases cancel: stop a subscription renewing)"),
            synonyms=("purchases", "compras")),
    Command("redeem", access_codes.redeem_command, N_("open a course with an access code: /redeem CODE")),
    Command("paysupport", purchases.paysupport_command, N_("help with a payment"), listed=False),
    *teams.COMMANDS,
    *home.COMMANDS,
    *admin.COMMANDS,
)

ButtonHandler = Callable[[Turn, str], Awaitable[None]]


async def _pay_button(turn: Turn, value: str) -> None:
    """`pay:buy:<course>` buys (dialogs/payments.py); a subscription's renewal buttons as sent before they had their
    own prefix (`pay:renewal…:<payment id>`, still in learners' chats) are dialogs/subscriptions.py's."""
    sent_before = value.rsplit(":", 1)[0] in subscriptions.SENT_BEFORE
    await (subscriptions.on_button if sent_before else payments.on_button)(turn, value)


BUTTONS: dict[str, ButtonHandler] = {
    "lesson": lessons.on_button,
    "quiz": quiz.on_button,
    "review": review.on_button,
    review.RETAKE: review.on_retake_button,
    "pay": _pay_button,
    "payment": payments.on_payment,
    subscriptions.PREFIX: subscriptions.on_button,
    "team": teams.on_button,
}

flow.register(*onboarding.FLOWS, *settings.FLOWS, *quiz.FLOWS, *review.FLOWS, *pause.FLOWS, *language.FLOWS)

__all__ = ["BUTTONS", "COMMANDS", "Command", "Turn"]
