"""Message catalogs: Spanish is complete, compiled from the .po the same way msgfmt would, and chosen per learner."""

from __future__ import annotations

import gettext
import io
import shutil
import subprocess

import pytest

import dialogs
from bot.messages import Choice, InboundMessage, Markup
from bot.routing import parse_command
from dialogs.i18n import LOCALES, compile_po, missing_translations, preferred, read_po, source_messages, translator
from tests.dialogs.learning_support import Learning, learner_row, learning_bot, onboard  # noqa: F401

PO = LOCALES / "es" / "LC_MESSAGES" / "lessonbot.po"


def test_spanish_catalog_is_complete_with_the_same_placeholders():
    assert len(source_messages()) > 150
    assert missing_translations("es") == []


def test_a_missing_translation_is_reported(tmp_path):
    entries = read_po(PO.read_text(encoding="utf-8"))
    assert entries["Saved."] == "Guardado."
    assert entries[("🔥 Streak: {n} day", "🔥 Streak: {n} days")] == ["🔥 Racha: {n} día", "🔥 Racha: {n} días"]
    broken = PO.read_text(encoding="utf-8").replace('msgstr "Guardado."', 'msgstr ""').replace(
        "Código de verificación: {code}", "Código de verificación: {codigo}")
    folder = tmp_path / "es" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "lessonbot.po").write_text(broken, encoding="utf-8")
    problems = missing_translations("es", locales=tmp_path)
    assert any("untranslated: 'Saved.'" in p for p in problems)
    assert any("placeholders differ" in p and "{codigo}" in p for p in problems)


def test_compiled_catalog_matches_msgfmt(tmp_path):
    ours = gettext.GNUTranslations(io.BytesIO(compile_po(PO.read_text(encoding="utf-8"))))
    assert ours.gettext("Saved.") == "Guardado."
    assert ours.ngettext("🔥 Streak: {n} day", "🔥 Streak: {n} days", 1) == "🔥 Racha: {n} día"
    assert ours.ngettext("🔥 Streak: {n} day", "🔥 Streak: {n} days", 5) == "🔥 Racha: {n} días"
    if shutil.which("msgfmt") is None:
        return  # the comparison needs GNU gettext's own compiler; the checks above stand without it
    subprocess.run(["msgfmt", "-o", str(tmp_path / "es.mo"), str(PO)], check=True)
    theirs = gettext.GNUTranslations((tmp_path / "es.mo").open("rb"))
    for key in source_messages():
        if isinstance(key, tuple):
            for n in (1, 2, 5):
                assert ours.ngettext(*key, n) == theirs.ngettext(*key, n)
        else:
            assert ours.gettext(key) == theirs.gettext(key), key


def test_the_values_filled_in_are_data_and_the_template_is_ours():
    _ = translator("es")
    hostile = "[Verify](https://evil.example) *you*"
    assert _("All set, {name}!", name=hostile) == "¡Todo listo, \\[Verify\\](https://evil.example) \\*you\\*!"
    english = translator("en")
    assert english.plural("Broadcast #{id} goes to {n} learner ({segment}):",
                          "Broadcast #{id} goes to {n} learners ({segment}):", 2, id=7, segment="_all_") == (
        "Broadcast #7 goes to 2 learners (\\_all\\_):")
    assert english("Quiz: {right} of {total} right.", right=2, total=3) == "Quiz: 2 of 3 right."


def test_unknown_languages_fall_back_to_english():
    assert translator("pt-BR").language == "en" and translator(None)("Saved.") == "Saved."
    assert translator("es-MX")("Saved.") == "Guardado."


async def test_a_learner_switches_to_spanish_and_everything_follows(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    [question] = await t.say("idioma")  # the Spanish word is a synonym of /language
    assert question == "Which language should I use?" and t.labels() == ["English", "Español"]
    [done] = await t.press("Español")
    assert done == "Vale, a partir de ahora te escribo en español."
    [lesson] = await t.say("siguiente")
    assert lesson.startswith("📘 Lección 1 de 5: ") and t.labels() == ["Siguiente ▸", "Más tarde"]
    [later] = await t.press("Más tarde")
    assert later.startswith("Vale, guardo por dónde vas. Vuelvo el ")
    [progress] = await t.say("progreso")
    assert "⭐ Puntos: 0" in progress and "🔥 Racha: 1 día (mejor: 1)" in progress
    [unknown] = await t.say("/bailar")
    assert unknown == "No conozco el comando /bailar. Envía /help para ver lo que puedo hacer."
    user, learner = await learner_row(bot, "test", "ann")
    assert user.locale == "es" and learner.language_chosen


@pytest.mark.parametrize("command", [c for c in dialogs.COMMANDS if c.synonyms], ids=lambda c: c.name)
def test_every_word_of_a_command_works_as_a_slash_command(command):
    """/help says plain words work instead of commands; "/idioma" or "/siguiente", typed as a command, is the same
    command as the word alone, accents or not ("/próximo", "/configuración"), with what follows it as its arguments."""
    for word in command.synonyms:
        assert parse_command("/" + word) == (command.name, ""), word
        assert parse_command("/" + word.capitalize()) == (command.name, ""), word
    assert parse_command("/próximo") == ("next", "") and parse_command("/configuración") == ("settings", "")
    assert parse_command("/pausa 7") == ("pause", "7") and parse_command("/comprar basics") == ("buy", "basics")
    assert parse_command("/bailar") == ("bailar", "")


async def test_slash_idioma_asks_for_the_language(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    [question] = await t.say("/idioma")
    assert question == "Which language should I use?" and t.labels() == ["English", "Español"]


async def test_the_platform_language_hint_is_the_default(learning_bot):
    bot, channel = learning_bot
    await bot.receive(InboundMessage(channel="test", platform_id="hint-1", chat_id="lu", sender_id="lu",
                                     text="/start", sender_name="Lucía", meta={"language": "es-AR"}))
    await bot.settle()
    [greeting] = channel.texts("lu")
    assert greeting.startswith("¡Hola Lucía! Soy Lessonbot.") and "Tu privacidad:" in greeting
    await bot.receive(InboundMessage(channel="test", platform_id="hint-2", chat_id="lu", sender_id="lu",
                                     text="hi", meta={"language": "de"}))  # a language we lack changes nothing
    await bot.settle()
    assert channel.texts("lu")[-1].startswith("¡Hola")


def test_po_reading_follows_msgfmt_rules():
    text = '\n'.join([
        'msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"',
        '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"', '',
        '#, fuzzy', 'msgid "Draft"', 'msgstr "Borrador"', '',
        'msgid "Two "', '"lines"', 'msgstr ""', '"Dos "', '"líneas"',
        'msgid "Empty"', 'msgstr ""',
        'msgid "{n} day"', 'msgid_plural "{n} days"', 'msgstr[0] "{n} día"', 'msgstr[1] "{n} días"',
    ])
    entries = read_po(text)
    assert "Draft" not in entries and "Empty" not in entries  # fuzzy and untranslated: English shows
    assert entries["Two lines"] == "Dos líneas"
    assert entries[("{n} day", "{n} days")] == ["{n} día", "{n} días"]
    compiled = gettext.GNUTranslations(io.BytesIO(compile_po(text)))
    assert compiled.ngettext("{n} day", "{n} days", 2) == "{n} días" and compiled.gettext("Draft") == "Draft"


def test_dates_in_a_sentence_are_written_the_way_each_language_writes_them():
    from datetime import date

    assert translator("en").date(date(2026, 12, 4)) == "4 December 2026"
    assert translator("es").date(date(2026, 12, 4)) == "4 de diciembre de 2026"


def test_a_buttons_label_and_our_own_address_show_as_they_are():
    """A label is plain text everywhere, so the escapes of its values are read back; an address we made (`Markup`)
    goes into a reply untouched, underscores and all, where an outside value would be escaped."""
    _ = translator("en")
    assert Choice(_("Buy — {price}", price="3.00 GBP"), "pay:buy:x").label == "Buy — 3.00 GBP"
    assert Choice(_("I'll call you {name}.", name="*Ann* [x](y)"), "n").label == "I'll call you *Ann* [x](y)."
    url = "https://checkout.stripe.com/c/pay/cs_test_000001"
    assert _("Pay here: {url}", url=Markup(url)) == f"Pay here: {url}"
    assert _("Pay here: {url}", url=url) != f"Pay here: {url}"


@pytest.mark.parametrize(("header", "language"), [
    ("es-MX,es;q=0.9,en;q=0.8", "es"),
    ("es;q=0.1, fr;q=0.9, en;q=0.8", "en"),
    ("es;q=0.1, fr;q=0.9", "es"),
    ("en;q=0.5, es;q=0.5", "en"),  # a tie keeps the header's order
    ("es-ES;q=0, es;q=0.3, en;q=0.2", "es"),  # a language takes its tags' highest weight
    ("es;q=0", None), ("en;q=0,es;q=0", None), ("ja,ko;q=0.5", None), ("", None), (None, None),
    ("en;q=0, *", "es"), ("*;q=0.5, es;q=0.1", "en"),
    ("ES ; Q=0.7, en;q=0.6", "es"),  # names and parameters in any case, with spaces
    ("es;q=abc, en;q=0.2", "en"), ("es;q=1.5, en;q=0.2", "en"),  # a weight that is no qvalue: passed over
    ("es", "es"), ("en-US", "en"),  # a single tag
])
def test_accept_language_is_read_by_its_weights(header, language):
    assert preferred(header) == language
