"""Message catalogs: every learner-facing string in English (the message ids) and in each translation.

Catalogs are gettext `.po` files under dialogs/locales/<lang>/LC_MESSAGES/lessonbot.po, the format translators'
tools read and write. They are compiled in memory the first time a language is used (no build step, no binary
files in the repository), into the standard library's `gettext.GNUTranslations`, so plural rules come from each
catalog's own header.

In dialog code: `_ = i18n.translator(user.locale)`, then `_("Hi {name}!", name=...)`,
`_.plural("{n} lesson", "{n} lessons", n)` and `_.date(day)` for a date in a sentence. The translated template is
ours and is light Markdown; the values filled into it are not: each is escaped (`bot.messages.literal`), so a name
like "[Verify](https://…)" or "*you*" is shown as typed on every platform, never as a link or formatting. Markup
belongs in the template, never in a value. Strings defined at import time (command summaries) are marked with
`N_("...")` and translated where they are shown.

`python -m dialogs.i18n` rewrites lessonbot.pot from the sources and lists every message a catalog lacks.
"""

from __future__ import annotations

import ast
import gettext
import io
import re
import struct
import sys
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

from bot.messages import Markup, literal

DOMAIN = "lessonbot"
LOCALES = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE = "en"
# The languages a learner can choose, each named in itself.
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español"}


def N_(message: str) -> str:
    """Mark a string for translation where it is defined; translate it where it is shown."""
    return message


@dataclass(frozen=True)
class Translator:
    language: str
    catalog: gettext.NullTranslations

    def __call__(self, message: str, **values: object) -> str:
        text = self.catalog.gettext(message)
        return text.format(**_as_data(values)) if values else text

    def plural(self, singular: str, plural: str, n: int, **values: object) -> str:
        """`{n}` is filled in with `n`."""
        return self.catalog.ngettext(singular, plural, n).format(n=n, **_as_data(values))

    def date(self, day: date) -> str:
        """A date as this language writes it in a sentence: "4 December 2026", "4 de diciembre de 2026"."""
        return self(_DATE, day=day.day, month=self(MONTHS[day.month - 1]), year=day.year)


def _as_data(values: dict[str, object]) -> dict[str, object]:
    """The values as text that shows as it is: numbers and our own `Markup` as they are, anything else escaped for
    the light Markdown."""
    return {
        key: value if isinstance(value, int | float | Markup) else literal(str(value)) for key, value in values.items()
    }


_DATE = N_("{day} {month} {year}")
MONTHS = (N_("January"), N_("February"), N_("March"), N_("April"), N_("May"), N_("June"), N_("July"),
          N_("August"), N_("September"), N_("October"), N_("November"), N_("December"))


def supported(tag: str | None) -> str | None:
    """The language we have for a BCP 47 tag or a platform's language code ("es-MX" → "es"), or None."""
    if not tag:
        return None
    base = tag.replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else None


def preferred(accept_language: str | None) -> str | None:
    """The language we have that an Accept-Language header ("es;q=0.1, fr;q=0.9, en;q=0.8") weighs highest, or None;
    a single tag is read too. Each language takes the highest weight (`q`, 1 when not given) of the tags that name
    it ("es-MX", "es"); `q=0` says it is not acceptable; equal weights keep the header's order; `*` stands for each of
    ours the header does not name. A tag whose weight is not a number from 0 to 1 is passed over."""
    weights: dict[str, float] = {}
    anything: float | None = None
    for entry in (accept_language or "").split(","):
        tag, *parameters = (part.strip() for part in entry.split(";"))
        weight = _weight(parameters)
        if weight is None:
            continue
        if tag == "*":
            anything = weight if anything is None else max(anything, weight)
        elif (language := supported(tag)) is not None:
            weights[language] = max(weights.get(language, 0.0), weight)
    if anything is not None:
        for language in LANGUAGES:
            weights.setdefault(language, anything)
    acceptable = [language for language, weight in weights.items() if weight > 0]
    return max(acceptable, key=lambda language: weights[language], default=None)  # (the first of the highest)


_QVALUE = re.compile(r"q=(0(\.[0-9]{0,3})?|1(\.0{0,3})?)", re.IGNORECASE)  # RFC 9110's qvalue


def _weight(parameters: list[str]) -> float | None:
    """The weight of an Accept-Language entry from its parameters: 1 without `q`, None when `q` is no qvalue."""
    for parameter in parameters:
        if parameter.lower().startswith("q="):
            found = _QVALUE.fullmatch(parameter.replace(" ", ""))
            return float(found.group(1)) if found else None
    return 1.0


def translator(language: str | None) -> Translator:
    language = supported(language) or DEFAULT_LANGUAGE
    return Translator(language, _catalog(language))


@cache
def _catalog(language: str) -> gettext.NullTranslations:
    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LANGUAGE or not path.is_file():
        return gettext.NullTranslations()  # the message ids are the English text
    return gettext.GNUTranslations(io.BytesIO(compile_po(path.read_text(encoding="utf-8"))))


# Reading .po files ---------------------------------------------------------------------------------------------------

_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")\s*$")


def read_po(text: str) -> dict[str | tuple[str, str], str | list[str]]:
    """The translated entries of a .po file: msgid → msgstr, or (msgid, msgid_plural) → [msgstr[0], …].

    Fuzzy and untranslated entries are left out, as msgfmt does, so the English text shows instead.
    """
    entries: dict[str | tuple[str, str], str | list[str]] = {}
    entry: dict[str, object] = {}
    fuzzy = False
    last: tuple[str, int | None] | None = None

    def finish() -> None:
        nonlocal entry, fuzzy
        if "msgid" in entry and not fuzzy:
            msgid = str(entry["msgid"])
            if "msgid_plural" in entry:
                forms = entry.get("plural_forms", {})
                assert isinstance(forms, dict)
                values = [forms[i] for i in sorted(forms)]
                if values and all(values):
                    entries[(msgid, str(entry["msgid_plural"]))] = values
            elif entry.get("msgstr") or msgid == "":
                entries[msgid] = str(entry.get("msgstr", ""))
        entry, fuzzy = {}, False

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            finish()
            last = None
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgid" in entry:
                    finish()
                fuzzy = True
            continue
        match = _KEYWORD.match(line)
        if match:
            keyword, index, value = match.groups()
            if keyword in ("msgid", "msgctxt") and "msgstr" in entry or keyword == "msgid" and "plural_forms" in entry:
                keep_fuzzy = fuzzy
                finish()
                fuzzy = keep_fuzzy
            string = _unquote(value, number)
            if keyword.startswith("msgstr["):
                forms = entry.setdefault("plural_forms", {})
                assert isinstance(forms, dict)
                forms[int(index)] = string
                last = ("plural_forms", int(index))
            else:
                entry[keyword] = string
                last = (keyword, None)
            continue
        if line.startswith('"') and last is not None:
            key, index = last
            if index is None:
                entry[key] = str(entry[key]) + _unquote(line, number)
            else:
                forms = entry[key]
                assert isinstance(forms, dict)
                forms[index] += _unquote(line, number)
            continue
        raise ValueError(f"line {number}: cannot read {raw!r}")
    finish()
    return entries


def _unquote(value: str, number: int) -> str:
    try:
        result = ast.literal_eval(value)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"line {number}: bad string {value}") from exc
    if not isinstance(result, str):
        raise ValueError(f"line {number}: bad string {value}")
    return result


def compile_po(text: str) -> bytes:
    """A .mo file's bytes for the .po text (the layout GNU msgfmt writes; gettext reads it back)."""
    messages: dict[bytes, bytes] = {}
    for key, value in read_po(text).items():
        if isinstance(key, tuple):
            assert isinstance(value, list)
            messages["\0".join(key).encode()] = "\0".join(value).encode()
        else:
            assert isinstance(value, str)
            messages[key.encode()] = value.encode()
    ids = sorted(messages)
    header_size = 7 * 4
    ids_blob = b"".join(i + b"\0" for i in ids)
    strs_blob = b"".join(messages[i] + b"\0" for i in ids)
    ids_start = header_size + 16 * len(ids)
    strs_start = ids_start + len(ids_blob)
    id_table, str_table = [], []
    offset = 0
    for i in ids:
        id_table += [len(i), ids_start + offset]
        offset += len(i) + 1
    offset = 0
    for i in ids:
        str_table += [len(messages[i]), strs_start + offset]
        offset += len(messages[i]) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, len(ids), header_size, header_size + 8 * len(ids), 0, 0)
    return header + struct.pack(f"{len(id_table)}i", *id_table) + struct.pack(
        f"{len(str_table)}i", *str_table
    ) + ids_blob + strs_blob


# Keeping catalogs complete --------------------------------------------------------------------------------------------


def source_messages(folder: Path = Path(__file__).parent) -> dict[str | tuple[str, str], list[str]]:
    """Every message the dialogs mark: `_("…")`, `N_("…")`, `_.plural("…", "…", n)`, with where each is used."""
    found: dict[str | tuple[str, str], list[str]] = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            strings = [a.value for a in node.args[:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            where = f"{path.name}:{node.lineno}"
            if isinstance(func, ast.Name) and func.id in ("_", "N_") and strings:
                found.setdefault(strings[0], []).append(where)
            elif (isinstance(func, ast.Attribute) and func.attr == "plural" and isinstance(func.value, ast.Name)
                  and func.value.id == "_" and len(strings) == 2):
                found.setdefault((strings[0], strings[1]), []).append(where)
    return found


_PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")


def missing_translations(language: str, *, locales: Path = LOCALES) -> list[str]:
    """Messages the catalog of `language` lacks, or whose placeholders differ from the English ones."""
    path = locales / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    catalog = read_po(path.read_text(encoding="utf-8")) if path.is_file() else {}
    problems = []
    for key, where in source_messages().items():
        value = catalog.get(key)
        if not value:
            problems.append(f"{where[0]}: untranslated: {key!r}")
            continue
        english = set().union(*(_PLACEHOLDER.findall(text) for text in ([key] if isinstance(key, str) else key)))
        for text in [value] if isinstance(value, str) else value:
            found = set(_PLACEHOLDER.findall(text))
            # a plural form may leave out {n} ("one question" for n == 1); nothing may appear that English lacks
            if found - english or (isinstance(key, str) and found != english):
                problems.append(f"{where[0]}: placeholders differ in {language}: {text!r}")
    return problems


def write_template(path: Path = LOCALES / f"{DOMAIN}.pot") -> None:
    lines = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"', ""]
    for key, where in source_messages().items():
        lines.append("#: " + " ".join(where))
        if "{" in (key if isinstance(key, str) else key[0]):
            lines.append("#, python-brace-format")
        if isinstance(key, tuple):
            lines += [f"msgid {_quote(key[0])}", f"msgid_plural {_quote(key[1])}", 'msgstr[0] ""', 'msgstr[1] ""', ""]
        else:
            lines += [f"msgid {_quote(key)}", 'msgstr ""', ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


if __name__ == "__main__":
    write_template()
    status = 0
    for code in LANGUAGES:
        if code == DEFAULT_LANGUAGE:
            continue
        for problem in missing_translations(code):
            print(f"{code}: {problem}")
            status = 1
    sys.exit(status)
