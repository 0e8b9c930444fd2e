"""The answer without a language model: the course's own sentence that holds the answer, with its source.

Nothing is written that the course does not say. The sentences of the best passages are scored by the fitted
sentence model (knowledge/ranking.py: the sentence's similarity to the question, the question's rare words it holds,
whether it carries what the question asks for — a name for "who", a date for "when", a number for "how many" —,
and how likely its passage is the one). The best is quoted, and the next best too when the model is unsure of
the first and both are short; a sentence too long to quote whole is cut to the clauses that hold the question's
words. A list is quoted whole, with the sentence that leads into it. The answerability model then weighs the
quote (how much of the question it holds, whether the question's rarest word is missing, the retrieval's margins
…): below its fitted threshold the answer declines, naming the lessons that came nearest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from knowledge import ranking
from knowledge.answer import FROM_YOUR_COURSE, CourseAnswer, NoAnswer, sources_of
from knowledge.retrieval import Passage
from knowledge.terms import terms

PASSAGES = 3
SENTENCE_CHARACTERS = 320  # a longer sentence is cut to the clauses that hold the question's words
QUOTE_CHARACTERS = 420  # a second sentence is quoted only if both fit in this
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
    def text(self) -> str:
        by_passage: dict[int, list[str]] = {}
        for rank, _, sentence in self.chosen:
            by_passage.setdefault(rank, []).append(sentence)
        quotes = [f"“{' … '.join(sentences)}”\n— {self.passages[rank].where}" for rank, sentences in
                  by_passage.items()]
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
        )


def compose(question: str, passages: Sequence[Passage], *, rarity: Callable[[str], float]) -> CourseAnswer:
    """Quote the sentence of `passages` that answers `question`, or decline; `rarity` gives a term's weight."""
    return quote(question, passages, rarity=rarity).answer(ranking.models().threshold)


def quote(question: str, passages: Sequence[Passage], *, rarity: Callable[[str], float]) -> Quote:
    """The best sentences for `question` and the answerability model's confidence in them."""
    models = ranking.models()
    asked = ranking.Question.of(question, rarity)
    given = tuple(passages[:PASSAGES])
    units, rows = sentence_rows(asked, given)
    if not units:
        return Quote((), given, 0.0, False)
    scores = models.sentences.scores(rows)
    order = np.argsort(-scores, kind="stable")
    picked = [int(order[0])]
    if len(order) > 1:
        # an unsure first choice brings the runner-up along, when both are short enough to quote together
        first, second = int(order[0]), int(order[1])
        sure = float(ranking.softmax(scores)[first])
        if sure < models.second_sentence and len(units[first][2]) + len(units[second][2]) <= QUOTE_CHARACTERS:
            picked.append(second)
    chosen = sorted(units[i] for i in picked)
    analysed = [ranking.analyse(p.chunk_id, p.text, p.headings) for p in given]
    quoted_terms = frozenset().union(*(analysed[rank].unit_terms[position] for rank, position, _ in chosen))
    quoted_words = frozenset().union(*(analysed[rank].unit_words[position] for rank, position, _ in chosen))
    quoted_pairs = frozenset().union(*(analysed[rank].unit_pairs[position] for rank, position, _ in chosen))
    best_rank, best_position, _ = units[picked[0]]
    cosines = given[best_rank].sentence_similarities
    row = ranking.answer_features(
        asked,
        passage_scores=[p.score for p in given],
        passage_probability=float(ranking.softmax([p.score for p in given])[0]),
        passage_cosine=given[0].similarity,
        sentence_score=float(scores[picked[0]]),
        sentence_probability=float(ranking.softmax(scores)[picked[0]]),
        sentence_cosine=cosines[best_position] if best_position < len(cosines) else 0.0,
        quoted=[text for *_, text in chosen],
        quoted_terms=quoted_terms,
        quoted_words=quoted_words,
        quoted_pairs=quoted_pairs,
        passage_terms=analysed[0].all_terms,
        passage_words=analysed[0].all_words,
    )
    shown = tuple((rank, position, _trim(text, asked)) for rank, position, text in chosen)
    settled = (len(asked.weights) <= SHORT_QUESTION_TERMS and asked.weights.keys() <= quoted_terms
               and asked.names <= quoted_words)
    return Quote(shown, given, models.probability(row), bool(quoted_terms & asked.weights.keys()), tuple(row),
                 settled)


def sentence_rows(
    asked: ranking.Question, passages: Sequence[Passage]
) -> tuple[list[tuple[int, int, str]], list[list[float]]]:
    """Every sentence of `passages` as (passage rank, position, text), and its features (ranking.SENTENCE_FEATURES)."""
    probabilities = ranking.softmax([p.score for p in passages])
    units: list[tuple[int, int, str]] = []
    rows: list[list[float]] = []
    for rank, passage in enumerate(passages):
        analysed = ranking.analyse(passage.chunk_id, passage.text, passage.headings)
        cosines = passage.sentence_similarities or (0.0,) * len(analysed.units)
        for position, unit in enumerate(analysed.units):
            units.append((rank, position, unit))
            rows.append(ranking.sentence_features(asked, analysed, position, cosines=cosines,
                                                  passage_probability=float(probabilities[rank])))
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
    """The run of the sentence's clauses, at most SENTENCE_CHARACTERS long, that holds most of the question."""
    clauses = _CLAUSE_END.split(sentence)
    best: tuple[float, int, int] = (-1.0, 0, 1)
    for start in range(len(clauses)):
        for end in range(start + 1, len(clauses) + 1):
            if len(" ".join(clauses[start:end])) > SENTENCE_CHARACTERS and end > start + 1:
                break
            covered = asked.coverage(set(terms(" ".join(clauses[start:end]))))
            if covered > best[0]:
                best = (covered, start, end)
    _, start, end = best
    text = " ".join(clauses[start:end])
    if len(text) > SENTENCE_CHARACTERS:  # one clause longer than the limit: cut at a word
        text = text[:SENTENCE_CHARACTERS].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    elif end < len(clauses):
        text = text.rstrip(",;:–—") + " …"
    return ("… " if start else "") + text
