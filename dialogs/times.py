"""Times as learners type them: a time zone, a time of day, the days of the week, quiet hours.

Every reader returns None for input it cannot read, so the step that asked can say what would work.
Zones: a city ("Lisbon", "São Paulo", "Nueva York"), an IANA name ("America/Sao_Paulo"), an offset ("UTC+5:30",
"GMT-3", "+02:00"), a common abbreviation ("PST", "CET"), or a country whose parts all keep one clock ("India",
"Alemania"); a country whose parts keep different clocks ("USA", "España", with the Canaries an hour behind) is no zone:
`several_zones` names it back, so the learner can be asked for their city. A country is read as a country before the
tz database's old names of some ("Portugal", "Japan"), which link to one of its clocks only; China keeps one official
time, Beijing's. An old name the tz database keeps as a link ("Eire", "US/Eastern") is read as the zone now named.
The countries and their zones are the tz database's own tables (zone.tab, iso3166.tab, shipped with the zones), with
names in Spanish and Portuguese. Fixed offsets are stored as "UTC+05:30" (see
storage.learners.zone_for); an offset never follows daylight saving time, so a city is the better answer, and the
confirmation shows the local time so the learner can tell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.text import fold
from storage.learners import offset_name

_REGIONS = ("Europe", "America", "Asia", "Africa", "Australia", "Pacific", "Atlantic", "Indian", "Antarctica")

# Cities people name that are not zone names themselves, and names of zone cities in Spanish and Portuguese.
_CITY_ALIASES = {
    "lisboa": "Europe/Lisbon", "porto": "Europe/Lisbon", "oporto": "Europe/Lisbon", "coimbra": "Europe/Lisbon",
    "londres": "Europe/London", "manchester": "Europe/London", "edinburgh": "Europe/London",
    "barcelona": "Europe/Madrid", "sevilla": "Europe/Madrid", "seville": "Europe/Madrid",
    "valencia": "Europe/Madrid", "bilbao": "Europe/Madrid", "malaga": "Europe/Madrid",
    "paris": "Europe/Paris", "lyon": "Europe/Paris", "marseille": "Europe/Paris",
    "munich": "Europe/Berlin", "munchen": "Europe/Berlin", "frankfurt": "Europe/Berlin", "hamburg": "Europe/Berlin",
    "cologne": "Europe/Berlin", "milan": "Europe/Rome", "milano": "Europe/Rome", "roma": "Europe/Rome",
    "naples": "Europe/Rome", "florence": "Europe/Rome", "geneva": "Europe/Zurich", "ginebra": "Europe/Zurich",
    "bruselas": "Europe/Brussels", "bruxelles": "Europe/Brussels", "lisbonne": "Europe/Lisbon",
    "nueva york": "America/New_York", "nova york": "America/New_York", "nyc": "America/New_York",
    "boston": "America/New_York", "washington": "America/New_York", "miami": "America/New_York",
    "atlanta": "America/New_York", "philadelphia": "America/New_York", "montreal": "America/Toronto",
    "san francisco": "America/Los_Angeles", "seattle": "America/Los_Angeles", "los angeles": "America/Los_Angeles",
    "la": "America/Los_Angeles", "san diego": "America/Los_Angeles", "portland": "America/Los_Angeles",
    "houston": "America/Chicago", "dallas": "America/Chicago", "austin": "America/Chicago",
    "rio": "America/Sao_Paulo", "rio de janeiro": "America/Sao_Paulo", "brasilia": "America/Sao_Paulo",
    "belo horizonte": "America/Sao_Paulo", "curitiba": "America/Sao_Paulo", "porto alegre": "America/Sao_Paulo",
    "ciudad de mexico": "America/Mexico_City", "cdmx": "America/Mexico_City", "mexico": "America/Mexico_City",
    "guadalajara": "America/Mexico_City", "medellin": "America/Bogota", "cali": "America/Bogota",
    "quito": "America/Guayaquil", "buenos aires": "America/Argentina/Buenos_Aires",
    "cordoba": "America/Argentina/Cordoba", "valparaiso": "America/Santiago",
    "mumbai": "Asia/Kolkata", "bombay": "Asia/Kolkata", "delhi": "Asia/Kolkata", "new delhi": "Asia/Kolkata",
    "bangalore": "Asia/Kolkata", "bengaluru": "Asia/Kolkata", "chennai": "Asia/Kolkata", "calcutta": "Asia/Kolkata",
    "hyderabad": "Asia/Kolkata", "beijing": "Asia/Shanghai", "pekin": "Asia/Shanghai", "shenzhen": "Asia/Shanghai",
    "osaka": "Asia/Tokyo", "kyoto": "Asia/Tokyo", "tokio": "Asia/Tokyo", "hanoi": "Asia/Bangkok",
    "abu dhabi": "Asia/Dubai", "tel aviv": "Asia/Jerusalem", "cape town": "Africa/Johannesburg",
    "moscu": "Europe/Moscow", "san petersburgo": "Europe/Moscow", "saint petersburg": "Europe/Moscow",
    "canberra": "Australia/Sydney", "wellington": "Pacific/Auckland",
}
# Abbreviations mean the place that uses them, daylight saving time included.
_ABBREVIATIONS = {
    "pst": "America/Los_Angeles", "pdt": "America/Los_Angeles", "pt": "America/Los_Angeles",
    "mst": "America/Denver", "mdt": "America/Denver", "cst": "America/Chicago", "cdt": "America/Chicago",
    "est": "America/New_York", "edt": "America/New_York", "et": "America/New_York",
    "cet": "Europe/Paris", "cest": "Europe/Paris", "bst": "Europe/London", "wet": "Europe/Lisbon",
    "west": "Europe/Lisbon", "eet": "Europe/Athens", "eest": "Europe/Athens", "ist": "Asia/Kolkata",
    "jst": "Asia/Tokyo", "aest": "Australia/Sydney", "brt": "America/Sao_Paulo",
}
# Countries as people name them, where the tz database's English name (iso3166.tab) is not how they do: ISO code.
_COUNTRY_NAMES = {
    "usa": "US", "us": "US", "u.s.": "US", "u.s.a.": "US", "united states of america": "US", "estados unidos": "US",
    "eeuu": "US", "ee.uu.": "US", "ee. uu.": "US", "eua": "US", "uk": "GB", "united kingdom": "GB",
    "great britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "reino unido": "GB",
    "inglaterra": "GB", "gran bretana": "GB", "escocia": "GB", "gales": "GB", "south korea": "KR", "korea": "KR",
    "corea del sur": "KR", "corea": "KR", "coreia do sul": "KR", "north korea": "KP", "corea del norte": "KP",
    "czechia": "CZ", "chequia": "CZ", "republica checa": "CZ", "holland": "NL", "the netherlands": "NL",
    "holanda": "NL", "paises bajos": "NL", "uae": "AE", "emiratos arabes unidos": "AE", "burma": "MM",
    "espana": "ES", "espanha": "ES", "alemania": "DE", "alemanha": "DE", "francia": "FR", "franca": "FR",
    "italia": "IT", "brasil": "BR", "japon": "JP", "japao": "JP", "rusia": "RU", "canada": "CA", "irlanda": "IE",
    "belgica": "BE", "suiza": "CH", "suica": "CH", "suecia": "SE", "noruega": "NO",
    "dinamarca": "DK", "finlandia": "FI", "polonia": "PL", "grecia": "GR", "turquia": "TR",
    "turkiye": "TR", "marruecos": "MA", "egipto": "EG", "sudafrica": "ZA", "africa do sul": "ZA",
    "filipinas": "PH", "nueva zelanda": "NZ", "nova zelandia": "NZ", "republica dominicana": "DO",
    "panama": "PA", "peru": "PE", "haiti": "HT", "tailandia": "TH", "singapur": "SG", "hungria": "HU",
    "rumania": "RO", "romenia": "RO", "ucrania": "UA", "croacia": "HR", "arabia saudita": "SA",
    "arabia saudi": "SA", "mocambique": "MZ", "cabo verde": "CV", "islandia": "IS", "libia": "LY",
}
# Countries that keep one official time though zone.tab lists zones of other clocks in them: that time's zone
_OFFICIAL_TIME = {"CN": "Asia/Shanghai"}  # (Asia/Urumqi is Xinjiang's local time, not the country's official one)
_OFFSET = re.compile(r"^(?:utc|gmt|z)?\s*(?P<sign>[+\-−])\s*(?P<hours>\d{1,2})(?:[:h.]?(?P<minutes>\d{2}))?$")


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone as stored (`name`) and as shown to the learner (`label`)."""

    name: str
    label: str


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    """Folded full names and city names → IANA name (cities of the main regions win over old aliases)."""
    # canonical names first: "America/Argentina/Buenos_Aires" over its old link "America/Buenos_Aires"
    names = sorted(available_timezones(), key=lambda n: (n.split("/")[0] not in _REGIONS, -n.count("/"), n))
    current = _current_names()
    found: dict[str, str] = {}
    for name in reversed(names):  # so the preferred spelling is written last and wins
        found[fold(name)] = current.get(name, name)
        if "/" in name and not name.startswith(("Etc/", "SystemV/")):
            found[fold(name.rsplit("/", 1)[1].replace("_", " "))] = current.get(name, name)
    return found


@lru_cache(maxsize=1)
def _current_names() -> dict[str, str]:
    """The tz database's old names ("Eire", "US/Eastern", "Asia/Calcutta": links, tzdata.zi's "L" lines) → the zone
    each names now. A name zone.tab lists stays itself, though the data keep it as a link to a zone with the same
    clocks since 1970 ("Europe/Amsterdam" in some builds)."""
    listed = {row[2] for row in _tz_table("zone.tab") if len(row) > 2}
    links: dict[str, str] = {}
    for line in _tz_text("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, link = line.split()
            links[link] = target
    current: dict[str, str] = {}
    for link, target in links.items():
        seen = {link}
        while target in links and target not in listed and target not in seen:  # a link to a link
            seen.add(target)
            target = links[target]
        if link not in listed:
            current[link] = target
    return current


def read_zone(text: str) -> Zone | None:
    """The zone a learner means, or None."""
    typed = fold(text).strip(" .!")
    if not typed:
        return None
    if typed in ("utc", "gmt", "z", "utc+0", "gmt+0", "utc 0"):
        return Zone("UTC", "UTC")
    offset = _OFFSET.match(typed.replace(" ", ""))
    if offset:
        hours, minutes = int(offset["hours"]), int(offset["minutes"] or 0)
        if hours > 14 or minutes not in (0, 15, 30, 45):
            return None
        total = (hours * 60 + minutes) * (-1 if offset["sign"] in "-−" else 1)
        if not -12 * 60 <= total <= 14 * 60:
            return None
        name = offset_name(total)
        return Zone(name, name)
    if typed in _ABBREVIATIONS:  # before the zone names: "EST" and "MST" are also names of zones without summer time
        return _labelled(_ABBREVIATIONS[typed])
    if typed in _CITY_ALIASES:
        return Zone(_CITY_ALIASES[typed], text.strip().title() if text.strip().islower() else text.strip())
    # a country before the zone names: the tz database's old names of some ("Portugal", "Japan") are links to one of
    # its clocks only (Lisbon's, not the Azores')
    clocks = _countries().get(typed)
    if clocks is not None:
        return Zone(clocks[0], _as_typed(text)) if len(clocks) == 1 else None
    names = _zone_names()
    for key in (typed, typed.replace(" ", "_")):
        if key in names:
            return _labelled(names[key])
    # "Lisbon, Portugal" or "Porto (Portugal)": try the city alone
    head = re.split(r"[,(]", typed)[0].strip()
    if head != typed:
        return read_zone(head)
    return None


def several_zones(text: str) -> str | None:
    """The country `text` names, as typed, when its parts keep different clocks (so the learner's city is needed);
    None for anything else."""
    if read_zone(text) is not None:
        return None
    clocks = _countries().get(fold(text).strip(" .!"))
    return text.strip(" .!") if clocks is not None and len(clocks) > 1 else None


@lru_cache(maxsize=1)
def _countries() -> dict[str, tuple[str, ...]]:
    """Folded country names → the zones of that country, one for each clock: zones that keep the same time through
    the year count once (Germany's Busingen keeps Berlin's), the one zone.tab lists first standing for them."""
    year = datetime.now(UTC).year
    moments = [datetime(year, month, day, tzinfo=UTC) for month in range(1, 13) for day in (1, 15)]
    clocks: dict[str, dict[tuple[object, ...], str]] = {}
    for code, _coordinates, name, *_comments in _tz_table("zone.tab"):
        try:
            zone = ZoneInfo(name)
        except ZoneInfoNotFoundError:
            continue
        clocks.setdefault(code, {}).setdefault(tuple(moment.astimezone(zone).utcoffset() for moment in moments), name)
    names = {fold(country): code for code, country, *_ in _tz_table("iso3166.tab")}
    names.update(_COUNTRY_NAMES)
    official = {code: (zone,) for code, zone in _OFFICIAL_TIME.items()}
    return {typed: official.get(code) or tuple(clocks[code].values()) for typed, code in names.items()
            if code in clocks}


def _tz_table(name: str) -> list[list[str]]:
    """The rows of one of the tz database's tables."""
    return [line.split("\t") for line in _tz_text(name).splitlines() if line and not line.startswith("#")]


def _tz_text(name: str) -> str:
    """One of the tz database's files, where zoneinfo finds the zones (the system's, else tzdata's); "" if missing."""
    for directory in TZPATH:
        path = Path(directory) / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    try:
        return resources.files("tzdata.zoneinfo").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return ""


def _as_typed(text: str) -> str:
    """A place's name as the learner wrote it, capitalised if they did not ("india" → "India", "uk" → "UK")."""
    shown = text.strip(" .!")
    if not shown.islower():
        return shown
    return shown.upper() if len(shown) <= 3 else shown.title()


def _labelled(name: str) -> Zone:
    return Zone(name, name.rsplit("/", 1)[-1].replace("_", " ") if "/" in name else name)


# Times of day ---------------------------------------------------------------------------------------------------------

_CLOCK = re.compile(
    r"^(?:at\s+|a las\s+|las\s+|as\s+)?(?P<hour>\d{1,2})(?:\s*[:.h]\s*(?P<minute>\d{2}))?\s*(?:h|hs|hrs|o'?clock)?\s*"
    r"(?P<half>a\.?\s?m\.?|p\.?\s?m\.?|de la manana|de la tarde|de la noche|da manha|da tarde|da noite)?$"
)
_NAMED_TIMES = {
    "morning": time(8), "manana": time(8), "manha": time(8), "noon": time(12), "midday": time(12),
    "mediodia": time(12), "midnight": time(0), "medianoche": time(0), "la medianoche": time(0), "meia-noite": time(0),
    "meia noite": time(0), "lunch": time(12, 30), "lunchtime": time(12, 30), "afternoon": time(16),
    "tarde": time(16), "evening": time(19), "noche": time(20), "night": time(21), "noite": time(20),
}


def read_time(text: str) -> time | None:
    """A time of day: "8", "08:30", "8.30", "20h", "7:30 pm", "8 de la tarde", "noon", "midnight", "morning"; None if
    unreadable."""
    typed = fold(text).strip(" .!")
    if typed.startswith("time:"):  # a pressed button
        typed = typed[5:]
    if typed in _NAMED_TIMES:
        return _NAMED_TIMES[typed]
    match = _CLOCK.match(typed)
    if not match:
        return None
    hour, minute = int(match["hour"]), int(match["minute"] or 0)
    half = (match["half"] or "").replace(".", "").replace(" ", "")
    if half:
        if not 1 <= hour <= 12:
            return None
        afternoon = half in ("pm", "delatarde", "delanoche", "datarde", "danoite")
        at_night = half in ("delanoche", "danoite")
        # (twelve at night is midnight, as twelve in the afternoon is noon)
        hour = hour % 12 + (12 if afternoon and not (at_night and hour == 12) else 0)
    if hour == 24 and minute == 0:
        hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


# "22:00-07:00", "10pm to 6am", "11 de la noche a 7 de la manana": the word between stands on its own ("a" inside
# "la" is no "a"); "from" or "de" before the first time is let go
_QUIET_RANGE = re.compile(r"\s+(?:to|a|as|hasta|until|ate)\s+|\s*[-–]\s*")
_QUIET_FROM = re.compile(r"^(?:from|de|desde|das)\s+")


def read_quiet_hours(text: str) -> tuple[time, time] | Literal[False] | None:
    """Quiet hours "22:00-07:00" → (start, end); "none"/"off" → False (no quiet hours); unreadable → None."""
    typed = fold(text).strip(" .!")
    if typed in ("none", "off", "no", "ninguna", "ninguno", "nada", "nenhuma", "quiet:none"):
        return False
    parts = _QUIET_RANGE.split(_QUIET_FROM.sub("", typed.removeprefix("quiet:")), maxsplit=1)
    if len(parts) != 2:
        return None
    start, end = read_time(parts[0]), read_time(parts[1])
    if start is None or end is None or start == end:
        return None
    return start, end


# Days of the week -----------------------------------------------------------------------------------------------------

EVERY_DAY, WEEKDAYS, WEEKENDS = "1234567", "12345", "67"
_DAY_WORDS = {
    1: ("mon", "monday", "mondays", "lun", "lunes", "seg", "segunda", "segunda-feira"),
    2: ("tue", "tues", "tuesday", "tuesdays", "mar", "martes", "ter", "terca", "terca-feira"),
    3: ("wed", "wednesday", "wednesdays", "mie", "miercoles", "qua", "quarta", "quarta-feira"),
    4: ("thu", "thur", "thurs", "thursday", "thursdays", "jue", "jueves", "qui", "quinta", "quinta-feira"),
    5: ("fri", "friday", "fridays", "vie", "viernes", "sex", "sexta", "sexta-feira"),
    6: ("sat", "saturday", "saturdays", "sab", "sabado", "sabados"),
    7: ("sun", "sunday", "sundays", "dom", "domingo", "domingos"),
}
_DAY_NUMBER = {word: number for number, words in _DAY_WORDS.items() for word in words}
_DAY_SETS = {
    EVERY_DAY: ("every day", "everyday", "daily", "all", "all days", "todos los dias", "cada dia", "diario",
                "todos", "todos os dias", "days:1234567"),
    WEEKDAYS: ("weekdays", "week days", "workdays", "work days", "entre semana", "dias laborables",
               "laborables", "dias de semana", "dias uteis", "days:12345"),
    WEEKENDS: ("weekends", "weekend", "fines de semana", "fin de semana", "fim de semana", "fins de semana",
               "days:67"),
}
_SET_OF = {phrase: days for days, phrases in _DAY_SETS.items() for phrase in phrases}


def read_days(text: str) -> str | None:
    """Weekdays as ISO digits ("135" = Monday, Wednesday, Friday) from "mon, wed, fri", "lunes a viernes",
    "weekdays", "every day"; None if no day could be read or a word is not a day."""
    typed = fold(text).strip(" .!")
    if typed in _SET_OF:
        return _SET_OF[typed]
    if typed.startswith("days:") and typed[5:].isdigit() and set(typed[5:]) <= set(EVERY_DAY):
        return "".join(sorted(set(typed[5:])))
    words = [w for w in re.split(r"[\s,;/&+]+|\band\b|\by\b|\be\b", typed) if w]
    if len(words) > 1 and words[0] in ("de", "from", "desde", "do", "da"):  # "de lunes a viernes", "from mon to fri"
        words = words[1:]
    days: set[int] = set()
    previous = None  # the day read just before: where "to" starts its range ("fri, mon to wed")
    index = 0
    while index < len(words):
        word = words[index].rstrip(".")
        if "-" in word and word not in _DAY_NUMBER:  # mon-fri
            first, _, last = word.partition("-")
            if first in _DAY_NUMBER and last in _DAY_NUMBER:
                days |= _day_range(_DAY_NUMBER[first], _DAY_NUMBER[last])
                previous = _DAY_NUMBER[last]
                index += 1
                continue
            return None
        if word in ("to", "a", "through", "until", "hasta", "ate") and previous is not None and index + 1 < len(words):
            following = words[index + 1].rstrip(".")
            if following not in _DAY_NUMBER:
                return None
            days |= _day_range(previous, _DAY_NUMBER[following])
            previous = _DAY_NUMBER[following]
            index += 2
            continue
        if word not in _DAY_NUMBER:
            return None
        previous = _DAY_NUMBER[word]
        days.add(previous)
        index += 1
    return "".join(str(d) for d in sorted(days)) or None


def _day_range(first: int, last: int) -> set[int]:
    if first <= last:
        return set(range(first, last + 1))
    return set(range(first, 8)) | set(range(1, last + 1))  # "fri-mon" wraps over the weekend
