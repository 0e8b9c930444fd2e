"""Text as people type it, made comparable: the one place that decides when two typed texts say the same thing.

Three levels, each the one before plus one step:

- `fold`: case, accents and spacing ("  Sí " → "si"). Punctuation stays, for commands and keywords ("/pause 7",
  "7:30", "lang:es").
- `plain_words`: punctuation becomes spaces too ("Yes, let's go!" → "yes let s go"), for a typed choice label.
- `answer_key`: number words become digits too ("The Twenty-One Club" → "the 21 club"), for quiz answers. Grading
  compares a learner's answer with the accepted ones by their keys, and the course check refuses two accepted
  answers with the same key, so "21" and "twenty one" are one answer in both places.

Number words are read in English, Spanish and Portuguese, the languages learners answer in.

Before any of that, text from outside is made storable (`storable`, `storable_data`): what no database column can
hold (NUL, which PostgreSQL refuses; a lone surrogate, which is not UTF-8 and which SQLite's driver cannot encode) is
taken out, and a value is cut to the length of its column. The pipeline does it once, where a message is recorded.

A code typed from a certificate, a receipt or a card (`code_letters`) is its ASCII letters and digits in upper case,
whatever was typed between them ("lb 7k2q-9xwm" → "LB7K2Q9XWM"); each kind of code puts its own dashes back.

A number typed as an id, a count or days (`whole_number`) is ASCII digits within a database integer: `str.isdigit`
also takes "²", which `int` refuses, and an id past 64 bits overflows the column it is looked up in.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_NOT_A_WORD = re.compile(r"[^\w\s]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates (a str holds a surrogate only alone)
# ASCII text (most of what is typed) takes shorter ways to the same results: a casefold is a lower(), no character
# decomposes or combines, and what is not a word's or a space's character is found by this table, made by the very
# expression the rest goes through.
_ASCII_NOT_A_WORD_AS_SPACE = {c: " " for c in range(128) if _NOT_A_WORD.match(chr(c))}

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "cero": 0, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
    "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14, "quince": 15,
    "dieciseis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20, "treinta": 30,
    "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80, "noventa": 90,
    "um": 1, "uma": 1, "dois": 2, "duas": 2, "quatro": 4, "sete": 7, "oito": 8, "nove": 9, "dez": 10,
    "vinte": 20, "trinta": 30,
}
_SCALES = {"hundred": 100, "cien": 100, "ciento": 100, "cem": 100, "thousand": 1000, "mil": 1000}
_JOINERS = {"and", "y", "e"}  # "one hundred and five", "treinta y dos", "vinte e um"


def storable(text: str, *, limit: int | None = None) -> str:
    """`text` without what a database cannot store (NUL, lone surrogates), cut to `limit` characters if given."""
    if not text.isascii():  # (a flag of the string: no scan)
        text = _UNSTORABLE.sub("", text)
    elif "\x00" in text:
        text = text.replace("\x00", "")
    return text if limit is None else text[:limit]


# What a person's name never needs: control characters (a terminal's escape sequence, a NUL), taken out; line breaks
# and tabs are spaces there (one would start a forged line). The marks that embed, override or isolate the direction
# of text (U+202A–U+202E, U+2066–U+2069) stay when each is closed again within the name (a Hebrew name in a Latin
# one), and go when one is left open: it would turn the text after the name around.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_DIRECTION = re.compile("[\u202a-\u202e\u2066-\u2069]")
_OPENS_EMBEDDING, _OPENS_ISOLATE = frozenset("\u202a\u202b\u202d\u202e"), frozenset("\u2066\u2067\u2068")


def person_name(text: str) -> str:
    """A name as a person is shown by it (typed, or a platform's profile): no control characters, each run of spaces
    and line breaks one space ("Ann\\nLee " → "Ann Lee"), no direction mark left open ("Bea\\u202e" → "Bea")."""
    if text.isascii() and text.isprintable() and "  " not in text and text == text.strip():
        return text  # (the usual case: nothing to take out)
    name = " ".join(_CONTROL.sub("", text).split())
    return name if _direction_closed(name) else _DIRECTION.sub("", name)


def _direction_closed(name: str) -> bool:
    """Whether every embedding, override and isolate opened in `name` is closed again, in order."""
    opened: list[str] = []
    for mark in _DIRECTION.findall(name):
        if mark in _OPENS_EMBEDDING or mark in _OPENS_ISOLATE:
            opened.append(mark)
        elif not opened or (mark == "\u202c") != (opened.pop() in _OPENS_EMBEDDING):
            return False  # a pop with nothing open, or closing the other kind
    return not opened


def storable_data(value: Any) -> Any:
    """JSON-like data (dicts, lists, strings, numbers) with every string, key included, made `storable`."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_data(key): storable_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_data(item) for item in value]
    return value


def fold(text: str) -> str:
    """Case, accents and spacing removed ("  Sí " → "si"), every script's digits as 0–9 ("١٢" → "12"); punctuation
    kept."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(_ascii_digit(c) for c in decomposed if not unicodedata.combining(c)).split())


def _ascii_digit(c: str) -> str:
    """A decimal digit of any script (Arabic-Indic, Devanagari, …) as its ASCII digit; anything else as it is."""
    return str(unicodedata.decimal(c)) if not c.isascii() and c.isdecimal() else c


def plain_words(text: str) -> str:
    """`fold`, and every character that is not a letter, digit or space read as a space ("Sí, ¡claro!" → "si claro")."""
    folded = fold(text)
    if folded.isascii():
        return " ".join(folded.translate(_ASCII_NOT_A_WORD_AS_SPACE).split())
    return " ".join(_NOT_A_WORD.sub(" ", folded).split())


def answer_key(text: str) -> str:
    """`plain_words`, and each run of number words as its digits: "  The  Twenty-One Club! " → "the 21 club"."""
    out: list[str] = []
    number: int | None = None
    current = 0
    for word in plain_words(text).split():
        value = _NUMBER_WORDS.get(word)
        if value is not None or (word in _SCALES and number is not None):
            if value is not None:
                current += value
            else:
                current = max(current, 1) * _SCALES[word]
            number = current
            continue
        if word in _JOINERS and number is not None:
            continue
        if number is not None:
            out.append(str(number))
            number, current = None, 0
        out.append(word)
    if number is not None:
        out.append(str(number))
    return " ".join(out)


def code_letters(typed: str) -> str:
    """The ASCII letters and digits of a typed code, upper case: "lb 7k2q-9xwm." → "LB7K2Q9XWM"."""
    return "".join(c for c in typed.upper() if c.isascii() and c.isalnum())


BIGGEST_ID = 2**63 - 1  # a BIGINT's largest value, on PostgreSQL and SQLite alike


def whole_number(text: str, *, most: int = BIGGEST_ID) -> int | None:
    """`text` (spaces around it aside) as a whole number of ASCII digits up to `most`; None if it is anything else."""
    text = text.strip()
    digits = text.lstrip("0") or "0"
    if not text.isascii() or not text.isdigit() or len(digits) > len(str(most)):
        return None  # (a longer run of digits is past `most`: not read, as int() refuses one past 4,300 digits)
    value = int(digits)
    return value if value <= most else None


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """"1 lesson", "2 lessons", "1,200 learners": a count in the English of operator output (the command line,
    course reports).

    What a learner reads is counted through the dialogs' catalogs instead (`_.plural`), whose plural rules follow
    each language.
    """
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
