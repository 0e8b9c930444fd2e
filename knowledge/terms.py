"""Words as the keyword search and the extractive answerer see them: lowercased, stop words dropped, stemmed.

"differences" and "different" both become "differ", so a learner's wording need not match the lesson's exactly.
The course's language (its `language:`, a BCP 47 tag) chooses the analyser: Snowball's stemmer for that language
(PyStemmer ships 30-odd, nothing is downloaded) and its stop words where there is a list (English, Spanish); a
language without a stemmer has its words kept as written. Without a language, English. Stems are memoised because
course text repeats its words.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
# the end of a sentence (its closing marks and footnote marks kept with it: `He said "Stop."`, `in 1636.[1]`,
# `formed.[citation needed]`), then a capital or a digit (`_cut`)
_SENTENCE_END = re.compile(r"(?<=[.!?])(?:[\"'”’)\]]|\[[^\[\]\n]{1,30}\])*(\s+)(?=[\"'“‘(\[]*\w)")
_ITEM_NUMBER = re.compile(r"\d+[.)]")  # "1." at the start of a numbered item is no sentence of its own
_LIST_ITEM = re.compile(r"(?:[-*•]|\d+[.)])\s")

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before being below between
    both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
    further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
    how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor
    not of off on once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should
    shouldn't so some such than that that's the their theirs them themselves then there there's these they they'd
    they'll they're they've this those through to too under until up very was wasn't we we'd we'll we're we've were
    weren't what what's when when's where where's which while who who's whom why why's with won't would wouldn't you
    you'd you'll you're you've your yours yourself yourselves also s t
    """.split()
)

SPANISH_STOP_WORDS = frozenset(
    """
    a al algo algunas algunos ante antes como con contra cual cuales cuando de del desde donde durante e el ella
    ellas ello ellos en entre era eran es esa esas ese eso esos esta estaba estaban estado estamos estan estar estas
    este esto estos estoy fue fueron ha habia han has hasta hay la las le les lo los mas me mi mis mucho muy nada ni
    no nos nosotros o os otra otras otro otros para pero poco por porque que quien quienes se sea ser si sido sin
    sobre su sus suya suyo tambien tanto te tiene tienen todo todos tu tus un una uno unos usted ustedes vosotros y
    ya yo él ésta éste está están estás había habían más mí qué quién quiénes cuál cuáles cómo cuándo dónde sí
    también tú
    """.split()
)
DEFAULT_LANGUAGE = "en"
# a BCP 47 tag's language (its first subtag) → PyStemmer's Snowball algorithm
_STEMMERS = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech", "da": "danish", "nl": "dutch",
    "en": "english", "eo": "esperanto", "es": "spanish", "et": "estonian", "fi": "finnish", "fr": "french",
    "de": "german",
    "el": "greek", "hi": "hindi", "hu": "hungarian", "id": "indonesian", "ga": "irish", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "no": "norwegian", "nb": "norwegian", "nn": "norwegian", "fa": "persian",
    "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian", "st": "sesotho",
    "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}
_STOP_WORDS = {"en": STOP_WORDS, "es": SPANISH_STOP_WORDS}


def analysed_language(language: str | None) -> str:
    """The language (lowercased first subtag of a BCP 47 tag) whose analyser reads text tagged `language`: "es-419"
    and "es" read alike; no tag, English."""
    return (language or DEFAULT_LANGUAGE).split("-", 1)[0].split("_", 1)[0].strip().lower() or DEFAULT_LANGUAGE


def stop_words(language: str | None = None) -> frozenset[str]:
    """The words of `language` left out of its terms (none for a language without a list)."""
    return _STOP_WORDS.get(analysed_language(language), frozenset())


@lru_cache(maxsize=64)
def _stemmer(language: str) -> Stemmer.Stemmer | None:
    algorithm = _STEMMERS.get(language)
    return Stemmer.Stemmer(algorithm) if algorithm else None


@lru_cache(maxsize=200_000)
def stem(word: str, language: str = DEFAULT_LANGUAGE) -> str:
    stemmer = _stemmer(analysed_language(language))
    return stemmer.stemWord(word) if stemmer is not None else word


def words(text: str) -> list[str]:
    """The lowercased words of `text`, apostrophes kept inside words ("don't")."""
    return [match.group().replace("’", "'") for match in _WORD.finditer(text.lower())]


def terms(text: str, language: str | None = None) -> list[str]:
    """The searchable terms of `text` written in `language` (a BCP 47 tag; None: English), in order, repeats kept
    (BM25 counts them)."""
    language = analysed_language(language)
    dropped = stop_words(language)
    return [stem(word, language) for word in words(text) if word not in dropped]


def sentences(text: str) -> list[str]:
    """`text` cut at sentence ends and line breaks; good enough for quoting, not a linguistic parser."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)", text):
        block = " ".join(block.split())
        if block:
            parts = [part for part in _cut(block) if part.strip()]
            if len(parts) > 1 and _ITEM_NUMBER.fullmatch(parts[0]):
                parts[:2] = [f"{parts[0]} {parts[1]}"]
            pieces.extend(parts)
    return pieces


# A period after these ends no sentence: a title before a name, a place's "St." or "Mt.", a Latin abbreviation …
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st mt gen col capt lt sgt gov sen rev hon vs e.g i.e cf approx".split())
# … and these none before a number ("ca. 2 million", "c. 1200", "No. 5", "Jan. 5", "29,029 ft. above").
_BEFORE_A_NUMBER = frozenset(
    "ca c no nos vol pp p fig ft jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_WORD_START = re.compile(r"[-–—/(\"'“‘\[]")
_OPENING = "\"'“‘(["


def _cut(block: str) -> list[str]:
    """`block` (one line) cut where a sentence ends: after ".", "!" or "?" and before a capital ("É" too) or a
    digit, except after an initial or an abbreviation (cut there, "ca. 2 million" lost its number to the next
    sentence)."""
    parts, start = [], 0
    for end in _SENTENCE_END.finditer(block):
        following = block[end.end() : end.end() + 30].split(" ", 1)[0].lstrip(_OPENING)
        if (following[:1].isupper() or following[:1].isdigit()) and _ends_a_sentence(block[: end.start()], following):
            parts.append(block[start : end.start(1)])
            start = end.end()
    parts.append(block[start:])
    return parts


def _ends_a_sentence(before: str, following: str) -> bool:
    """Whether the period, "!" or "?" that ends `before` ends a sentence, `following` the word after it."""
    if not before.endswith("."):
        return True
    word = _WORD_START.split(before.rsplit(None, 1)[-1])[-1][:-1]
    if _initials(word):  # "John F. Kennedy", "the U.S. Army"; not "vitamin D. Not" nor "the U.S. The"
        return following.lower() in STOP_WORDS
    if word.lower() in _ABBREVIATIONS:
        return False
    return not (word.lower() in _BEFORE_A_NUMBER and following[:1].isdigit())


def _initials(word: str) -> bool:
    """"F", "U.S", "Ł": capital letters each standing alone."""
    return bool(word) and all(len(letter) == 1 and letter.isupper() for letter in word.split("."))


def quotable_units(text: str) -> list[str]:
    """The passage's sentences, except that a list is one unit with the sentence that leads into it (one ending in
    ":"), its items one per line. The units are what is quoted, embedded one by one at ingest, and ranked."""
    units: list[str] = []
    for piece in sentences(text):
        if _LIST_ITEM.match(piece) and units and (units[-1].endswith(":") or _is_item(units[-1].split("\n")[-1])):
            units[-1] += "\n" + piece
        else:
            units.append(piece)
    return units


def _is_item(line: str) -> bool:
    return bool(_LIST_ITEM.match(line))
