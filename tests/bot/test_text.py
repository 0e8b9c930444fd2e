"""The one text normaliser: fold for commands and keywords, plain words for choice labels, answer keys for quizzes."""

from __future__ import annotations

import pytest

from bot.text import answer_key, fold, person_name, plain_words, storable, storable_data


def test_fold_removes_case_accents_and_extra_spaces_but_keeps_punctuation():
    assert fold("  Sí ") == "si"
    assert fold("CONFIGURACIÓN\t de   Ñandú") == "configuracion de nandu"
    assert fold("/Pause 7") == "/pause 7"
    assert fold("7:30") == "7:30" and fold("lang:ES") == "lang:es"
    assert fold("Straße") == "strasse"  # casefold, not lower


def test_plain_words_read_punctuation_as_spaces():
    assert plain_words("Yes, let's go!") == "yes let s go"
    assert plain_words("¡Sí, claro!") == "si claro"
    assert plain_words("Secure-Check.NET.") == "secure check net"
    assert plain_words("  ...  ") == ""
    assert plain_words("4") == "4"


@pytest.mark.parametrize("typed, key", [
    ("21", "21"),
    ("twenty one", "21"),
    ("Twenty-One", "21"),
    ("  The  Twenty-One Club! ", "the 21 club"),
    ("one hundred and five", "105"),
    ("two thousand", "2000"),
    ("treinta y dos", "32"),
    ("vinte e um", "21"),
    ("veintiuno", "veintiuno"),  # one word, not in the table: left as it is
    ("and", "and"),  # a joiner only joins numbers
    ("hundred", "hundred"),  # a scale alone is not a number
    ("seven wonders", "7 wonders"),
    ("Contraseña", "contrasena"),
    ("١٢", "12"),  # Arabic-Indic digits, typed on an Arabic keyboard
    ("۱۲ ساعت", "12 ساعت"),  # Persian
    ("१२", "12"),  # Devanagari
    ("²", "2"),  # a superscript, as NFKD reads it
])
def test_answer_keys_read_number_words_as_digits(typed, key):
    assert answer_key(typed) == key


def test_answers_that_differ_keep_different_keys():
    assert answer_key("21") != answer_key("22")
    assert answer_key("smishing") != answer_key("SMS phishing")


def test_storable_takes_out_what_no_column_holds_and_keeps_the_rest():
    assert storable("An\x00n\ud800 😀 é") == "Ann 😀 é"
    assert storable("A" * 300, limit=200) == "A" * 200
    assert storable_data({"na\x00me": ["\udc80x", 1, None], "n": 2.5}) == {"name": ["x", 1, None], "n": 2.5}


@pytest.mark.parametrize("character", [chr(c) for c in range(128)])
def test_ascii_text_reads_as_the_same_text_beside_an_accented_word(character):
    """ASCII text takes a shorter way through fold, plain_words and storable; beside a word that is not ASCII (which
    takes the long way, and folds to "e"), every one of the 128 characters comes out as it does alone."""
    for text in (character, f"Ab{character}cD", f"{character}x {character}", f" {character}{character}_9 "):
        assert fold(f"{text} É") == " ".join(filter(None, [fold(text), "e"]))
        assert plain_words(f"{text} É") == " ".join(filter(None, [plain_words(text), "e"]))
        assert storable(f"{text}É") == storable(text) + "É"


def test_a_whole_number_is_ascii_digits_within_a_database_integer():
    from bot.text import BIGGEST_ID, whole_number

    assert [whole_number(text) for text in (" 42 ", "0", "²", "٣", "4.0", "-1", "", "1e3")] == [
        42, 0, None, None, None, None, None, None]
    assert whole_number(str(BIGGEST_ID)) == BIGGEST_ID and whole_number(str(BIGGEST_ID + 1)) is None
    assert whole_number("3651", most=3650) is None and whole_number("3650", most=3650) == 3650
    assert whole_number("9" * 5000) is None and whole_number("0" * 5000 + "7") == 7  # int() refuses 4,300+ digits


@pytest.mark.parametrize(("given", "shown"), [
    ("Ann", "Ann"),
    ("  Ann   Lee ", "Ann Lee"),
    ("Lee, Ann", "Lee, Ann"),
    ("Bea\u202e", "Bea"),  # a right-to-left override would turn the text after the name around
    ("Dan\n> Lessonbot: your account is locked", "Dan > Lessonbot: your account is locked"),  # no forged line
    ("\x1b[2K\x1b[1GMallory\x1b[8m", "[2K[1GMallory[8m"),  # no terminal escape sequence
    ("A\x00B", "AB"),
    ("\u202bשלום\u202c Cohen", "\u202bשלום\u202c Cohen"),  # a direction mark closed within the name stays
    ("👩\u200d💻 Dev", "👩\u200d💻 Dev"),  # a joiner within an emoji stays
])
def test_a_persons_name_holds_no_control_or_direction_mark_and_no_line_break(given, shown):
    assert person_name(given) == shown
