"""/language: the learner chooses the language the bot writes in (a button each, or the name typed)."""

from __future__ import annotations

from bot.text import fold
from dialogs import flow
from dialogs.flow import DONE, Flow, Invalid, Step
from dialogs.i18n import LANGUAGES, supported
from dialogs.learner import learner_of, tr
from dialogs.turn import Exchange, Turn


def read_language(text: str) -> str | None:
    typed = fold(text).removeprefix("lang:")
    names = {fold(name): code for code, name in LANGUAGES.items()}
    names.update({"english": "en", "ingles": "en", "ingles (english)": "en", "spanish": "es", "espanol": "es",
                  "castellano": "es"})
    return names.get(typed) or supported(typed if len(typed) <= 5 else None)


async def language(turn: Turn, args: str) -> None:
    """/language [en|es]"""
    if args.strip():
        chosen = read_language(args)
        if chosen is not None:
            await _set_language(turn, chosen)
            await flow.resume(turn)  # the question in progress, asked again in the language chosen
            return
    await flow.start(turn, "language")


async def ask_language(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    x.say(_("Which language should I use?"),
          choices=[(name, f"lang:{code}") for code, name in LANGUAGES.items()])


async def answer_language(turn: Turn, data: flow.Data, text: str) -> str:
    chosen = read_language(text)
    if chosen is None:
        _ = tr(turn)
        raise Invalid(_("Please pick one of the languages above."))
    await _set_language(turn, chosen)
    return DONE


async def _set_language(turn: Turn, code: str) -> None:
    learner = await learner_of(turn)
    turn.user.locale = code
    learner.language_chosen = True
    _ = tr(turn)
    turn.say(_("OK, I'll write in English from now on."))


FLOWS = (Flow("language", (Step("choose", ask_language, answer_language, takes=("lang",)),)),)
