"""The evidence that ranks passages and sentences and decides whether the course answers a question at all.

Three small linear models, fitted on SQuAD-format questions by `lessonbot eval knowledge DIR --fit` and shipped in
`ranking.json` beside this file (weights, and the mean and scale each feature is standardised with):

- **passages**: the retrieval's candidates re-ranked on lexical and vector evidence at passage and sentence level
  (`PASSAGE_FEATURES`); a softmax over each question's candidates was fitted to put the passage holding the answer
  first;
- **sentences**: the sentences of the best passages scored for holding the answer (`SENTENCE_FEATURES`), including
  whether a sentence carries what the question asks for (who → a name, when → a date, how many → a number);
- **answerability**: a logistic model of "the chosen sentences answer the question" (`ANSWER_FEATURES`), whose
  `threshold` was set so that 90 % of the answerable fitting questions are answered.

Every feature is a share, a similarity or a difference of them, so the weights carry over from a set of long
articles to a course of a few lessons. Words are weighted by rarity (BM25's idf over the learner's courses).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.terms import DEFAULT_LANGUAGE, analysed_language, quotable_units, stop_words, terms, words

MODEL_FILE = Path(__file__).with_name("ranking.json")

PASSAGE_FEATURES = (
    "fused",  # the first stage's score relative to its best candidate's
    "keyword",  # BM25 relative to the question's best candidate
    "cosine",  # the passage's similarity to the question
    "best_sentence_cosine",  # the most similar sentence's
    "second_sentence_cosine",  # the second most similar sentence's: the answer often spans two
    "coverage",  # share of the question's weighted terms in the passage (title and headings included)
    "best_sentence_coverage",  # the same for its best sentence
    "window_coverage",  # the same for its best two neighbouring sentences (how close the terms stand)
    "phrases",  # share of the question's neighbouring term pairs found side by side
    "heading_coverage",  # share of the question's weighted terms in the lesson title and headings
    "best_sentence_both",  # the best sentence on similarity and coverage together
    "names",  # share of the question's names and numbers ("Warsaw", "1776") found as written
    "best_sentence_names",  # the same for its best sentence by it
)
SENTENCE_FEATURES = (
    "cosine",  # the sentence's similarity to the question
    "cosine_behind_best",  # how far below the passage's most similar sentence
    "coverage",  # share of the question's weighted terms in the sentence
    "coverage_behind_best",
    "neighbour_coverage",  # the most its neighbouring sentences hold (they may name what it calls "it")
    "names",  # share of the question's names and numbers in the sentence
    "phrases",
    "answer_type",  # holds what the question asks for (a name, date, number, place), outside the question's words
    "passage",  # the passage's probability of being the one (softmax of the passage ranking)
    "first",  # the passage's first sentence
    "length",  # log of the characters
    "novel",  # log of how many of its words (stop words aside) the question lacks: an answer is something new
    "neighbours_add",  # what its neighbours add to its share of the question's weighted terms
    "coverage_behind_top",  # how far its share is below the best sentence's of all passages
    "cosine_behind_top",  # the same for similarity
    "density",  # the question terms it holds over the span of words they take in it (how close they stand)
    *(f"type_{kind}" for kind in ("number", "date", "person", "place")),  # answer_type, for each kind
    "type_near",  # how close what the question asks for stands to the question's words (answer_type_near)
)
ANSWER_FEATURES = (
    "passage_score",  # the best passage's ranking score
    "passage_probability",  # its share of the ranking's softmax
    "passage_margin",  # its lead over the second
    "sentence_score",  # the chosen sentence's score
    "sentence_probability",  # its share of the sentence model's softmax
    "coverage",  # share of the question's weighted terms in the quoted sentences
    "rarest_missing",  # weight of the rarest question term the quote lacks, over the rarest term's
    "rarest_missing_in_passage",  # the same for the best passage as a whole
    "passage_coverage",  # share of the question's weighted terms in the best passage
    "names_missing",  # share of the question's names and numbers the quote lacks
    "answer_type_wanted",  # the question asks for a name, date, number or place …
    "answer_type_found",  # … and the quote holds one
    "cosine",  # the chosen sentence's similarity to the question
    "passage_cosine",  # the best passage's
    "question_terms",  # log of the number of question terms
    "negation_unmatched",  # the question negates words ("did not define …") that the quote does not negate
    "missing",  # how many of the question's terms the quote lacks …
    "missing_in_passage",  # … and the best passage
    "missing_weight",  # their weights summed (not relative: a swapped rare word weighs alike in any question)
    "missing_weight_in_passage",
    "all_in_quote",  # the quote holds every question term
    "all_in_passage",  # the best passage does
    "one_missing_in_passage",  # it lacks exactly one (SQuAD's unanswerable questions often swap one word)
    "names_missing_in_passage",  # share of the question's names and numbers the best passage lacks
    "phrases",  # share of the question's neighbouring term pairs side by side in the quote
    "qualifier_unmatched",  # "first", "largest", "before" … in the question, not in the quote …
    "qualifier_unmatched_in_passage",  # … nor in the best passage
    "opposite",  # the quote lacks a question word but holds its opposite ("higher" / "lower", "first" / "second")
    "prefix_opposite",  # or the word without (or with) a negating prefix ("unestablished" / "established")
    *(f"asks_{word}" for word in ("what", "which", "who", "when", "where", "why", "how")),
    "number_absent",  # a number of the question ("1990", "11th") the best passage lacks, as written
    "words_absent",  # how many of the question's words (stop words aside, as written) it lacks, up to four, / 4
    "quoted_probability",  # the sentence model's probability of the sentences quoted, together
    "quoted_sentences",  # how many are quoted
    *(f"best_{name}" for name in SENTENCE_FEATURES),  # the best sentence's evidence, as the sentence model weighed it
)


# --- the question ---------------------------------------------------------------------------------------------------

ANSWER_TYPES = ("number", "date", "person", "place")
_TYPE_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("date", re.compile(r"\b(when|what (year|years|decade|century|date|day|month|time period|era)|"
                        r"which (year|decade|century|date|day|month)|how long ago|since when)\b")),
    ("number", re.compile(r"\b(how (many|much|long|old|far|big|large|high|tall|fast|often|deep|wide|heavy)|"
                          r"what (percentage|percent|proportion|number|amount|fraction))\b")),
    ("person", re.compile(r"\b(who|whom|whose|which (person|people|man|woman|king|president|scientist))\b")),
    ("place", re.compile(r"\b(where|what (country|city|state|region|place|continent|river)|"
                         r"which (country|city|state|region|place|continent|river))\b")),
)
_NUMBER = re.compile(
    r"\b\d[\d,.]*\b|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|hundreds|thousand|thousands|million|millions|billion|dozen|half|quarter|third)\b",
    re.IGNORECASE,
)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DATE = re.compile(rf"\b(1\d{{3}}|20\d{{2}}|\d{{1,4}}s|\d{{1,2}}(st|nd|rd|th) century|{_MONTHS})\b|\bcentur(y|ies)\b",
                   re.IGNORECASE)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zà-ÿ]+(?:\s+(?:[A-Z][a-zà-ÿ]+|de|von|van|of|the))*")
_PLACE = re.compile(r"\b(?:in|at|from|near|to|into|across)\s+(?:the\s+)?([A-Z][a-zà-ÿ]+)")
_NEGATIONS = frozenset({"not", "never", "no", "none", "nor", "without", "cannot"})
QUESTION_NEGATED_REACH = 3  # the words after a negation of the question that it negates ("did not define BPP")
QUOTE_NEGATED_REACH = 5  # the same in the quote, which words more loosely ("are not, as a rule, defined")
QUESTION_WORDS = ("what", "which", "who", "when", "where", "why", "how")
# Words that turn a question into another when one is swapped for another or dropped: SQuAD 2.0's unanswerable
# questions are often an answerable one with such a swap ("the Second Minister" for "the First Minister").
QUALIFIERS = frozenset("""
    first last largest smallest biggest most least earliest latest highest lowest before after only never always
    longest shortest oldest newest best worst greatest fewest more less larger smaller higher lower earlier later
    major minor main second third final initial top bottom
    """.split())
_OPPOSITE_PAIRS = """
    higher/lower high/low first/last first/second second/third third/fourth over/under more/less more/fewer
    before/after largest/smallest large/small larger/smaller biggest/smallest internal/external increase/decrease
    increased/decreased increase/reduce early/late earliest/latest earlier/later north/south east/west
    northern/southern eastern/western win/lose won/lost lost/defeated minimum/maximum above/below positive/negative
    most/least longest/shortest long/short oldest/newest old/new older/younger best/worst major/minor upper/lower
    inside/outside start/end began/ended begin/end accept/reject accepted/rejected rise/fall rose/fell strong/weak
    allowed/banned legal/illegal male/female men/women private/public domestic/foreign ancient/modern
    same/different true/false success/failure successful/unsuccessful gain/loss open/closed light/heavy slow/fast
    cheap/expensive rich/poor wet/dry hot/cold always/never all/none inner/outer import/export imports/exports
    left/right agree/disagree support/oppose supported/opposed
    """.split()
OPPOSITES: dict[str, frozenset[str]] = {
    word: frozenset(b if a == word else a for a, b in (pair.split("/") for pair in _OPPOSITE_PAIRS) if word in (a, b))
    for word in {w for pair in _OPPOSITE_PAIRS for w in pair.split("/")}
}
_NEGATING_PREFIX = re.compile(r"^(?:un|non|in|im|il|ir|dis|anti|de|mis)(\w{4,})$")


_TOKEN = re.compile(r"[\w']+")
_WH_WORD = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b")


def answer_type(question: str) -> str | None:
    """What the question asks for, when its wording says: a number, a date, a person or a place. Its first question
    word decides ("what happened … when …" asks for no date)."""
    lowered = question.lower()
    first = _WH_WORD.search(lowered)
    for kind, cue in _TYPE_CUES:
        if cue.match(lowered, first.start()) if first else cue.search(lowered):
            return kind
    return None


def holds_answer_type(kind: str | None, sentence: str, question_words: set[str]) -> bool:
    """The sentence holds a `kind` that the question does not already name."""
    return bool(answer_type_places(kind, sentence, question_words))


def answer_type_places(kind: str | None, sentence: str, question_words: Collection[str]) -> list[int]:
    """Where in the sentence (character offsets) a `kind` stands that the question does not already name."""
    if kind is None:
        return []
    if kind == "place":
        found = [(m.start(1), m.group(1)) for m in _PLACE.finditer(sentence)]
    else:
        pattern = {"number": _NUMBER, "date": _DATE, "person": _NAME}[kind]
        found = [(m.start(), m.group()) for m in pattern.finditer(sentence)]
    return [start for start, match in found if any(token.lower() not in question_words for token in match.split())]


def answer_type_near(kind: str | None, sentence: str, question: Question) -> float:
    """How close what the question asks for stands to the question's own words in the sentence: 1 / (1 + the
    characters between them / 30), 0 when the sentence holds no such thing or none of the question's words."""
    places = answer_type_places(kind, sentence, question.words)
    if not places:
        return 0.0
    asked = [m.start() for m in _TOKEN.finditer(sentence) if m.group().lower() in question.words - question.stop_words]
    if not asked:
        return 0.0
    return 1.0 / (1.0 + min(abs(a - b) for a in places for b in asked) / 30)


@dataclass(frozen=True)
class Question:
    """A question as the features see it: its terms with their weights, its term pairs, what it asks for."""

    text: str
    weights: dict[str, float]  # distinct term → idf
    pairs: frozenset[tuple[str, str]]
    kind: str | None
    words: frozenset[str]  # its lowercased words, for "not already in the question"
    negated: frozenset[str]  # the terms a negation of the question stands before (negated_terms)
    names: frozenset[str] = frozenset()  # lowercased: its capitalised words but the first, and its numbers
    language: str = DEFAULT_LANGUAGE  # whose analyser made its terms (knowledge.terms.analysed_language)

    @classmethod
    def of(cls, text: str, rarity: Callable[[str], float], language: str | None = None) -> Question:
        """`text` read in `language`: the language of the course it is asked of (None: English)."""
        language = analysed_language(language)
        ordered = terms(text, language)
        dropped = stop_words(language)
        return cls(
            text=text,
            weights={term: rarity(term) for term in dict.fromkeys(ordered)},
            pairs=frozenset(zip(ordered, ordered[1:], strict=False)),
            kind=answer_type(text),
            words=frozenset(re.findall(r"[\w']+", text.lower())),
            negated=negated_terms(text, QUESTION_NEGATED_REACH, language),
            names=frozenset(
                word.lower() for position, word in enumerate(re.findall(r"[\w']+", text))
                if (position and word[0].isupper() or any(c.isdigit() for c in word)) and word.lower() not in dropped
            ),
            language=language,
        )

    @property
    def stop_words(self) -> frozenset[str]:
        return stop_words(self.language)

    @property
    def total(self) -> float:
        return sum(self.weights.values()) or 1.0

    def coverage(self, found: set[str] | frozenset[str]) -> float:
        return sum(weight for term, weight in self.weights.items() if term in found) / self.total

    def named(self, words: frozenset[str]) -> float:
        """Share of the question's names found in `words` (1 when it names nothing)."""
        return len(self.names & words) / len(self.names) if self.names else 1.0

    def phrases(self, pairs: set[tuple[str, str]] | frozenset[tuple[str, str]]) -> float:
        return len(self.pairs & pairs) / len(self.pairs) if self.pairs else 0.0


# --- passages, analysed once per process -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysed:
    """A passage cut into quotable units, with each unit's terms and term pairs."""

    units: tuple[str, ...]
    unit_terms: tuple[frozenset[str], ...]
    unit_pairs: tuple[frozenset[tuple[str, str]], ...]
    unit_words: tuple[frozenset[str], ...]  # lowercased, as written
    heading_terms: frozenset[str]
    unit_sequences: tuple[tuple[str, ...], ...] = ()  # each unit's terms in order

    @cached_property
    def all_terms(self) -> frozenset[str]:
        return frozenset().union(self.heading_terms, *self.unit_terms)

    @cached_property
    def all_pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset().union(*self.unit_pairs)

    @cached_property
    def all_words(self) -> frozenset[str]:
        return frozenset().union(*self.unit_words)


_CACHED = 20_000  # passages kept analysed; an id is a hash of the text, so an entry never goes stale
_analysed: OrderedDict[tuple[str, str], Analysed] = OrderedDict()
_analysed_lock = threading.Lock()


def analyse(chunk_id: str, text: str, headings: str, language: str | None = None) -> Analysed:
    """The passage `text` (under `headings`) in `language`, its course's (None: English)."""
    key = (chunk_id, analysed_language(language))
    with _analysed_lock:
        found = _analysed.get(key)
        if found is not None:
            _analysed.move_to_end(key)
            return found
    units = quotable_units(text)
    unit_term_lists = [terms(unit, language) for unit in units]
    found = Analysed(
        units=tuple(units),
        unit_terms=tuple(frozenset(t) for t in unit_term_lists),
        unit_pairs=tuple(frozenset(zip(t, t[1:], strict=False)) for t in unit_term_lists),
        unit_words=tuple(frozenset(words(unit)) for unit in units),
        heading_terms=frozenset(terms(headings, language)),
        unit_sequences=tuple(tuple(t) for t in unit_term_lists),
    )
    with _analysed_lock:
        _analysed[key] = found
        while len(_analysed) > _CACHED:
            _analysed.popitem(last=False)
    return found


def passage_features(
    question: Question, passage: Analysed, *, fused: float, keyword: float, cosine: float,
    sentence_cosines: Sequence[float],
) -> list[float]:
    cosines = sorted(sentence_cosines, reverse=True) or [cosine]
    unit_coverage = [question.coverage(unit) for unit in passage.unit_terms] or [0.0]
    windows = [question.coverage(a | b) for a, b in zip(passage.unit_terms, passage.unit_terms[1:], strict=False)]
    both = [c + u for c, u in zip(sentence_cosines, unit_coverage, strict=False)] or [cosine + unit_coverage[0]]
    best = max(range(len(unit_coverage)), key=unit_coverage.__getitem__)
    return [
        fused,
        keyword,
        cosine,
        cosines[0],
        cosines[1] if len(cosines) > 1 else cosines[0],
        question.coverage(passage.all_terms),
        max(unit_coverage),
        max(windows, default=unit_coverage[0]),
        question.phrases(passage.all_pairs),
        question.coverage(passage.heading_terms),
        max(both) / 2,
        question.named(passage.all_words),
        question.named(passage.unit_words[best]) if passage.unit_words else 0.0,
    ]


def sentence_features(
    question: Question, passage: Analysed, position: int, *, cosines: Sequence[float], passage_probability: float,
    top_coverage: float, top_cosine: float,
) -> list[float]:
    """`top_coverage`, `top_cosine`: the best of any sentence of the passages weighed together."""
    coverages = [question.coverage(unit) for unit in passage.unit_terms]
    unit = passage.units[position]
    cosine = cosines[position] if position < len(cosines) else 0.0
    kind = question.kind
    holds_kind = holds_answer_type(kind, unit, set(question.words))
    around = frozenset().union(*passage.unit_terms[max(position - 1, 0) : position + 2])
    return [
        cosine,
        max(cosines, default=cosine) - cosine,
        coverages[position],
        max(coverages) - coverages[position],
        max(coverages[max(position - 1, 0) : position + 2]),
        question.named(passage.unit_words[position]),
        question.phrases(passage.unit_pairs[position]),
        float(holds_kind),
        passage_probability,
        float(position == 0),
        math.log(1 + len(unit)),
        math.log(1 + len(passage.unit_words[position] - question.words - question.stop_words)),
        question.coverage(around) - coverages[position],
        top_coverage - coverages[position],
        top_cosine - cosine,
        _density(question, passage.unit_sequences[position]),
        *(float(holds_kind and kind == each) for each in ("number", "date", "person", "place")),
        answer_type_near(kind, unit, question),
    ]


def _density(question: Question, sequence: Sequence[str]) -> float:
    """The question's distinct terms in `sequence` over the number of terms from the first of them to the last."""
    places = [i for i, term in enumerate(sequence) if term in question.weights]
    if not places:
        return 0.0
    return len({sequence[i] for i in places}) / (places[-1] - places[0] + 1)


def answer_features(
    question: Question,
    *,
    passage_scores: Sequence[float],
    passage_probability: float,
    passage_cosine: float,
    sentence_score: float,
    sentence_probability: float,
    quoted_probability: float,
    quoted_sentences: int,
    best_sentence: Sequence[float],
    sentence_cosine: float,
    quoted: Sequence[str],
    quoted_terms: frozenset[str],
    quoted_words: frozenset[str],
    quoted_pairs: frozenset[tuple[str, str]],
    passage_terms: frozenset[str],
    passage_words: frozenset[str],
) -> list[float]:
    rarest = max(question.weights.values(), default=0.0) or 1.0
    missing = [weight for term, weight in question.weights.items() if term not in quoted_terms]
    missing_in_passage = [weight for term, weight in question.weights.items() if term not in passage_terms]
    found_type = any(holds_answer_type(question.kind, unit, set(question.words)) for unit in quoted)
    qualifiers = question.words & QUALIFIERS
    return [
        passage_scores[0] if passage_scores else 0.0,
        passage_probability,
        passage_scores[0] - passage_scores[1] if len(passage_scores) > 1 else 1.0,
        sentence_score,
        sentence_probability,
        question.coverage(quoted_terms),
        max(missing, default=0.0) / rarest,
        max(missing_in_passage, default=0.0) / rarest,
        question.coverage(passage_terms),
        1.0 - question.named(quoted_words),
        float(question.kind is not None),
        float(question.kind is not None and found_type),
        sentence_cosine,
        passage_cosine,
        math.log(1 + len(question.weights)),
        float(bool(question.negated) and not question.negated & frozenset().union(
            *(negated_terms(unit, QUOTE_NEGATED_REACH, question.language) for unit in quoted))),
        len(missing),
        len(missing_in_passage),
        sum(missing),
        sum(missing_in_passage),
        float(not missing),
        float(not missing_in_passage),
        float(len(missing_in_passage) == 1),
        1.0 - question.named(passage_words),
        question.phrases(quoted_pairs),
        float(bool(qualifiers - quoted_words)),
        float(bool(qualifiers - passage_words)),
        float(_holds_opposite(question.words, quoted_words)),
        float(_prefix_opposite(question.words, quoted_words)),
        *(float(word in question.words) for word in QUESTION_WORDS),
        *_absent(question, passage_words),
        quoted_probability,
        quoted_sentences,
        *best_sentence,
    ]


def negated_terms(text: str, reach: int, language: str | None = None) -> frozenset[str]:
    """The terms of the words within `reach` after each negation of `text` ("What machine does not define BPP?":
    define and BPP): what it says is not so. A question's negation is met only by the quote negating one of the
    same words; a "not" elsewhere in the quote says nothing of it (on squad-dev, weighing any "not" of the quote as
    meeting it left 136 of the 544 negated unanswerable questions looking answered). "No" after "yes or" is an
    alternative, not a negation. A typographic apostrophe is read as a plain one ("didn’t" as "didn't")."""
    tokens: list[str] = []
    for token in _TOKEN.findall(text.lower().replace("’", "'")):
        tokens += [token[:-3], "not"] if token.endswith("n't") else [token]
    found: set[str] = set()
    for place, token in enumerate(tokens):
        if token in _NEGATIONS and not (token == "no" and tokens[place - 1 : place] in (["or"], ["yes"])):
            found.update(terms(" ".join(word for word in tokens[place + 1 : place + 1 + reach]
                                        if word not in _NEGATIONS), language))
    return frozenset(found)


def _absent(question: Question, passage_words: frozenset[str]) -> list[float]:
    """What of the question, as written, the passage lacks: a number, and how many words."""
    absent = question.words - question.stop_words - passage_words
    return [
        float(any(any(c.isdigit() for c in word) for word in question.names - passage_words)),
        min(len(absent), 4) / 4,
    ]


def _holds_opposite(question_words: frozenset[str], quoted_words: frozenset[str]) -> bool:
    """The quote lacks one of the question's words and holds its opposite."""
    return any(word not in quoted_words and OPPOSITES.get(word, frozenset()) & quoted_words for word in question_words)


def _prefix_opposite(question_words: frozenset[str], quoted_words: frozenset[str]) -> bool:
    """One side says "unestablished" where the other says "established" (and not the negated word itself)."""

    def negates(words: frozenset[str], other: frozenset[str]) -> bool:
        return any(word not in other and (found := _NEGATING_PREFIX.match(word)) and found.group(1) in other
                   for word in words)

    return negates(question_words, quoted_words) or negates(quoted_words, question_words)


# --- the models -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Linear:
    """w · (x − mean) / scale (+ bias): a fitted linear score."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float = 0.0

    def scores(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        if not len(rows):
            return np.zeros(0)
        x = (np.asarray(rows, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(x @ self.weights + self.bias)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.names),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "bias": round(self.bias, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], names: tuple[str, ...]) -> Linear:
        if tuple(data["features"]) != names:
            raise ValueError(f"{MODEL_FILE.name} was fitted on other features: fit it again (eval knowledge --fit)")
        return cls(names, np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["weights"]),
                   float(data.get("bias", 0.0)))


@dataclass(frozen=True)
class Models:
    passages: Linear
    sentences: Linear
    answerable: Linear
    threshold: float  # answerability probability below which the answer declines
    quote_per_character: float  # a next best sentence is quoted when its probability is this much per character
    fitted_on: tuple[str, ...] = ()  # the lessons (articles) whose questions it was fitted on

    def to_json(self) -> dict[str, Any]:
        return {
            "fitted_on": list(self.fitted_on),
            "threshold": round(self.threshold, 4),
            "quote_per_character": round(self.quote_per_character, 7),
            "passages": self.passages.to_json(),
            "sentences": self.sentences.to_json(),
            "answerable": self.answerable.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Models:
        return cls(
            passages=Linear.from_json(data["passages"], PASSAGE_FEATURES),
            sentences=Linear.from_json(data["sentences"], SENTENCE_FEATURES),
            answerable=Linear.from_json(data["answerable"], ANSWER_FEATURES),
            threshold=float(data["threshold"]),
            quote_per_character=float(data["quote_per_character"]),
            fitted_on=tuple(data.get("fitted_on", ())),
        )

    @classmethod
    def neutral(cls) -> Models:
        """Where fitting starts: the fused score, the sentences' similarity and coverage, no threshold."""

        def linear(names: tuple[str, ...], weights: dict[str, float]) -> Linear:
            return Linear(names, np.zeros(len(names)), np.ones(len(names)),
                          np.asarray([weights.get(name, 0.0) for name in names]))

        return cls(
            passages=linear(PASSAGE_FEATURES, {"fused": 1.0}),
            sentences=linear(SENTENCE_FEATURES, {"cosine": 1.0, "coverage": 1.0, "passage": 1.0}),
            answerable=linear(ANSWER_FEATURES, {"coverage": 1.0}),
            threshold=0.0,
            quote_per_character=1.0,
        )

    def save(self, path: Path = MODEL_FILE) -> None:
        text = json.dumps(self.to_json(), indent=1)
        # each list on one line: features, means, scales and weights read as the rows of a table
        text = re.sub(r"\[\n\s*([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text)
        path.write_text(text + "\n", encoding="utf-8")

    def probability(self, row: Sequence[float]) -> float:
        return float(1.0 / (1.0 + math.exp(-float(self.answerable.scores([row])[0]))))


_models: Models | None = None


def models() -> Models:
    """The shipped models (`ranking.json`), loaded once."""
    global _models
    if _models is None:
        _models = Models.from_json(json.loads(MODEL_FILE.read_text(encoding="utf-8")))
    return _models


def in_use() -> Models | None:
    """The models this process ranks with, if it has loaded or been given any."""
    return _models


def use(fitted: Models | None) -> None:
    """Rank with `fitted` from now on in this process (the evaluation, while it fits); None: the shipped ones."""
    global _models
    _models = fitted


def softmax(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if not len(values):
        return values
    exp = np.exp(values - values.max())
    return np.asarray(exp / exp.sum())


# --- fitting (numpy, full-batch gradient descent on standardised features) -------------------------------------------

def _standardise(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return mean, scale


def fit_listwise(groups: Sequence[tuple[np.ndarray, np.ndarray]], names: tuple[str, ...], *, l2: float = 1e-3,
                 steps: int = 600) -> Linear:
    """Weights that put each group's right rows first: a softmax over each group (one question's candidates), the
    loss being minus the log of the probability the right rows get together. `groups` holds (rows, which are right);
    a group with no right row, or only right rows, teaches nothing and is skipped."""
    kept = [(rows, right) for rows, right in groups if right.any() and not right.all()]
    stacked = np.vstack([rows for rows, _ in kept])
    mean, scale = _standardise(stacked)
    x = (stacked - mean) / scale
    right = np.concatenate([right for _, right in kept]).astype(np.float64)
    bounds = np.cumsum([0] + [len(rows) for rows, _ in kept])[:-1]
    group_of = np.repeat(np.arange(len(kept)), [len(rows) for rows, _ in kept])
    weights = np.zeros(x.shape[1])
    moment, velocity = np.zeros_like(weights), np.zeros_like(weights)
    for step in range(1, steps + 1):
        scores = x @ weights
        exp = np.exp(scores - np.maximum.reduceat(scores, bounds)[group_of])
        probabilities = exp / np.add.reduceat(exp, bounds)[group_of]
        on_right = probabilities * right
        wanted = on_right / np.add.reduceat(on_right, bounds)[group_of]
        gradient = x.T @ (probabilities - wanted) / len(kept) + l2 * weights
        weights, moment, velocity = _adam(weights, gradient, moment, velocity, step)
    return Linear(names, mean, scale, weights)


def fit_logistic(rows: np.ndarray, labels: np.ndarray, names: tuple[str, ...], *, l2: float = 1e-3,
                 steps: int = 800) -> Linear:
    mean, scale = _standardise(rows)
    x = np.hstack([(rows - mean) / scale, np.ones((len(rows), 1))])
    weights = np.zeros(x.shape[1])
    moment, velocity = np.zeros_like(weights), np.zeros_like(weights)
    for step in range(1, steps + 1):
        probabilities = 1.0 / (1.0 + np.exp(-(x @ weights)))
        gradient = x.T @ (probabilities - labels) / len(rows) + l2 * np.append(weights[:-1], 0.0)
        weights, moment, velocity = _adam(weights, gradient, moment, velocity, step)
    return Linear(names, mean, scale, weights[:-1], float(weights[-1]))


def _adam(weights: np.ndarray, gradient: np.ndarray, moment: np.ndarray, velocity: np.ndarray, step: int,
          rate: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    moment = 0.9 * moment + 0.1 * gradient
    velocity = 0.999 * velocity + 0.001 * gradient**2
    corrected = moment / (1 - 0.9**step), velocity / (1 - 0.999**step)
    return weights - rate * corrected[0] / (np.sqrt(corrected[1]) + 1e-8), moment, velocity
