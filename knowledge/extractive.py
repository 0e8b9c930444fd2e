"""The answer without a language model: the course's own sentence that holds the answer, with its source.

Nothing is written that the course does not say. The sentences of the best passages are scored by the fitted
sentence model (knowledge/ranking.py: the sentence's similarity to the question, the question's rare words it holds,
whether it carries what the question asks for — a name for "who", a date for "when", a number for "how many" —,
and how likely its passage is the one). The best is quoted, and each next best that the model gives at least its
fitted share of probability per character (up to four, within QUOTE_CHARACTERS); a sentence too long to quote
whole is cut to the clauses that hold the question's words. A list is quoted whole, with the sentence that leads
into it. The answerability model then weighs the best sentences (how much of the question they hold, a question
word swapped for its opposite, the retrieval's margins …): below its fitted threshold the answer declines, naming
the lessons that came nearest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from knowledge import ranking
from knowledge.answer import FROM_YOUR_COURSE, CourseAnswer, NoAnswer, Quoted, sources_of
from knowledge.retrieval import Passage
from knowledge.terms import terms

PASSAGES = 3
SENTENCE_CHARACTERS = 400  # a longer sentence is cut to the clauses that hold the question's words (at 320, the cut
# took the answer away from 13 of squad-dev's quotes, most of them sentences of 320 to 400 characters)
QUOTE_CHARACTERS = 550  # the sentences quoted together, at most (before a long one is cut to its clauses)
QUOTE_SENTENCES = 4
WEIGHED_CHARACTERS = 420  # the answerability model weighs the best two sentences when both fit in this
# A question of this many terms or fewer, all of them in the quote, is answered whatever the answerability model
# says: it was fitted on SQuAD's long questions, and "what is smishing?" asked of a course that defines smishing is
# plainly covered (on squad-dev this answers 0.5 % more of the unanswerable questions).
SHORT_QUESTION_TERMS = 2
LIST_CHARACTERS = 800  # a list with its lead-in is quoted up to this long, whole items only
_CLAUSE_END = re.compile(r"(?<=[,;:–—)])\s+")


@dataclass(frozen=True)
class Quote:
    """The chosen sentences and how sure the answerability model is that they answer the question."""

    chosen: tuple[tuple[int, int, str], ...]  # (passage rank, sentence position, text as quoted), reading order
    passages: tuple[Passage, ...]
    confidence: float
    shares_words: bool  # the quote holds at least one of the question's terms
    features: tuple[float, ...] = ()  # what the answerability model weighed (ranking.ANSWER_FEATURES)
    settled: bool = False  # a short question whose every term and name the quote holds

    @property
    def quotes(self) -> tuple[Quoted, ...]:
        """The chosen sentences by passage, in the order the passages were first quoted."""
        by_passage: dict[int, list[str]] = {}
        for rank, _, sentence in self.chosen:
            by_passage.setdefault(rank, []).append(sentence)
        return tuple(Quoted(tuple(sentences), self.passages[rank].where) for rank, sentences in by_passage.items())

    @property
    def text(self) -> str:
        quotes = [f"“{' … '.join(quoted.sentences)}”\n— {quoted.where}" for quoted in self.quotes]
        return f"{FROM_YOUR_COURSE}\n\n" + "\n\n".join(quotes)

    def answer(self, threshold: float) -> CourseAnswer:
        """The quote as an answer, or a decline naming the nearest lessons when confidence is below `threshold`."""
        if not self.chosen or not self.shares_words or (self.confidence < threshold and not self.settled):
            return CourseAnswer.none(NoAnswer.NOT_COVERED, confidence=self.confidence,
                                     covers=sources_of(self.passages))
        ranks = list(dict.fromkeys(rank for rank, _, _ in self.chosen))
        return CourseAnswer(
            text=self.text,
            sources=sources_of(self.passages[rank] for rank in ranks),
            passages=tuple(self.passages[rank].chunk_id for rank in ranks),
            confidence=self.confidence,
            quotes=self.quotes,
        )


def compose(question: str, passages: Sequence[Passage], *, rarity: Callable[[str], float]) -> CourseAnswer:
    """Quote the sentence of `passages` that answers `question`, or decline; `rarity` gives a term's weight."""
    return quote(question, passages, rarity=rarity).answer(ranking.models().threshold)


def quote(question: str, passages: Sequence[Passage], *, rarity: Callable[[str], float]) -> Quote:
    """The best sentences for `question` and the answerability model's confidence in them."""
    models = ranking.models()
    given = tuple(passages[:PASSAGES])
    # read as the best passage's course is written
    asked = ranking.Question.of(question, rarity, given[0].language if given else None)
    units, rows = sentence_rows(asked, given)
    if not units:
        return Quote((), given, 0.0, False)
    scores = models.sentences.scores(rows)
    picked = _pick([len(text) for *_, text in units], scores, models.quote_per_character)
    chosen = sorted(units[i] for i in picked)
    analysed = [ranking.analyse(p.chunk_id, p.text, p.headings, p.language) for p in given]
    quoted_terms = frozenset().union(*(analysed[rank].unit_terms[position] for rank, position, _ in chosen))
    quoted_words = frozenset().union(*(analysed[rank].unit_words[position] for rank, position, _ in chosen))
    weighed = _weighed(units, scores)
    weighed_terms = frozenset().union(*(analysed[rank].unit_terms[position] for rank, position, _ in weighed))
    weighed_words = frozenset().union(*(analysed[rank].unit_words[position] for rank, position, _ in weighed))
    weighed_pairs = frozenset().union(*(analysed[rank].unit_pairs[position] for rank, position, _ in weighed))
    best_rank, best_position, _ = units[picked[0]]
    probabilities = ranking.softmax(scores)
    cosines = given[best_rank].sentence_similarities
    row = ranking.answer_features(
        asked,
        passage_scores=[p.score for p in given],
        passage_probability=float(ranking.softmax([p.score for p in given])[0]),
        passage_cosine=given[0].similarity,
        sentence_score=float(scores[picked[0]]),
        sentence_probability=float(probabilities[picked[0]]),
        quoted_probability=float(probabilities[picked].sum()),
        quoted_sentences=len(picked),
        best_sentence=rows[picked[0]],
        sentence_cosine=cosines[best_position] if best_position < len(cosines) else 0.0,
        quoted=[text for *_, text in weighed],
        quoted_terms=weighed_terms,
        quoted_words=weighed_words,
        quoted_pairs=weighed_pairs,
        passage_terms=analysed[0].all_terms,
        passage_words=analysed[0].all_words,
    )
    shown = tuple((rank, position, _trim(text, asked)) for rank, position, text in chosen)
    settled = (len(asked.weights) <= SHORT_QUESTION_TERMS and asked.weights.keys() <= quoted_terms
               and asked.names <= quoted_words)
    return Quote(shown, given, models.probability(row), bool(quoted_terms & asked.weights.keys()), tuple(row),
                 settled)


def _weighed(units: Sequence[tuple[int, int, str]], scores: np.ndarray) -> list[tuple[int, int, str]]:
    """What the answerability model weighs, however many sentences are quoted: the best sentence, and the runner-up
    when both fit in WEIGHED_CHARACTERS (on squad-dev, judging what is quoted instead declined fewer unanswerable
    questions: the evidence should not grow with the model's doubt)."""
    top = [int(index) for index in np.argsort(-scores, kind="stable")[:2]]
    if len(top) > 1 and len(units[top[0]][2]) + len(units[top[1]][2]) > WEIGHED_CHARACTERS:
        top = top[:1]
    return sorted(units[index] for index in top)


def _pick(lengths: Sequence[int], scores: np.ndarray, per_character: float) -> list[int]:
    """The sentences to quote, best first: the best, then each of the next best (at most QUOTE_SENTENCES in all,
    within QUOTE_CHARACTERS together) whose probability is at least `per_character` times its length. A sure first
    choice is quoted alone; an unsure one brings along the sentences likely to hold the answer, a short one sooner
    than a long one: for the same average length this hits more often than adding sentences until those picked
    reach a probability together."""
    probabilities = ranking.softmax(scores)
    order = [int(index) for index in np.argsort(-scores, kind="stable")]
    picked, length = [order[0]], lengths[order[0]]
    for index in order[1:QUOTE_SENTENCES]:
        if probabilities[index] >= per_character * lengths[index] and length + lengths[index] <= QUOTE_CHARACTERS:
            picked.append(index)
            length += lengths[index]
    return picked


def sentence_rows(
    asked: ranking.Question, passages: Sequence[Passage]
) -> tuple[list[tuple[int, int, str]], list[list[float]]]:
    """Every sentence of `passages` as (passage rank, position, text), and its features (ranking.SENTENCE_FEATURES).
    A sentence two passages share (overlapping chunks of one paragraph) is one candidate, the higher ranked's."""
    probabilities = ranking.softmax([p.score for p in passages])
    analysed = [ranking.analyse(p.chunk_id, p.text, p.headings, p.language) for p in passages]
    cosines = [p.sentence_similarities or (0.0,) * len(a.units) for p, a in zip(passages, analysed, strict=True)]
    top_coverage = max((asked.coverage(unit) for a in analysed for unit in a.unit_terms), default=0.0)
    top_cosine = max((cosine for each in cosines for cosine in each), default=0.0)
    units: list[tuple[int, int, str]] = []
    rows: list[list[float]] = []
    seen: set[str] = set()
    for rank, passage in enumerate(analysed):
        for position, unit in enumerate(passage.units):
            if unit in seen:
                continue
            seen.add(unit)
            units.append((rank, position, unit))
            rows.append(ranking.sentence_features(
                asked, passage, position, cosines=cosines[rank], passage_probability=float(probabilities[rank]),
                top_coverage=top_coverage, top_cosine=top_cosine,
            ))
    return units, rows


def _trim(sentence: str, asked: ranking.Question) -> str:
    if "\n" in sentence:  # a list: whole lines, as many as fit
        lines = sentence.split("\n")
        kept = [lines[0]]
        for line in lines[1:]:
            if len("\n".join([*kept, line])) > LIST_CHARACTERS:
                kept.append("…")
                break
            kept.append(line)
        return "\n".join(kept)
    if len(sentence) <= SENTENCE_CHARACTERS:
        return sentence
    return _clauses_holding_the_question(sentence, asked)


def _clauses_holding_the_question(sentence: str, asked: ranking.Question) -> str:
    """The run of the sentence's clauses, at most SENTENCE_CHARACTERS long, that holds most of the question: of
    runs holding as much, the one that starts last and goes furthest, since the answer tends to follow the words
    of the question (on squad-dev, taking the first such run cut the answer away from 24 quotes of 2,910)."""
    clauses = _CLAUSE_END.split(sentence)
    best: tuple[float, int, int] = (-1.0, 0, 1)
    for start in range(len(clauses)):
        for end in range(start + 1, len(clauses) + 1):
            if len(" ".join(clauses[start:end])) > SENTENCE_CHARACTERS and end > start + 1:
                break
            covered = asked.coverage(set(terms(" ".join(clauses[start:end]), asked.language)))
            if covered >= best[0]:
                best = (covered, start, end)
    _, start, end = best
    text = " ".join(clauses[start:end])
    if len(text) > SENTENCE_CHARACTERS:  # one clause longer than the limit: cut at a word
        text = text[:SENTENCE_CHARACTERS].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    elif end < len(clauses):
        text = text.rstrip(",;:–—") + " …"
    return ("… " if start else "") + text
