"""Keyword search: BM25 over stemmed terms, one index per course, scored over the courses a learner may see.

Each course is analysed in its own language (knowledge.terms: "aprendiendo" and "aprender" are one term of a Spanish
course), and a question is analysed for each course in that course's language.

Each course's index is built from the store's text the first time the course is searched and kept per process
until the course's revision changes (any ingest that changed it). Building reads the course's chunks once and
counts terms into compressed columns (a few seconds for 100,000 chunks). Scoring several courses together uses
their combined document frequencies and lengths, so it ranks exactly as one index over those courses would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.terms import analysed_language, terms

# The usual BM25 constants (Robertson); they also gave the best recall on the SQuAD paragraphs.
K1 = 1.5
B = 0.75


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    course_id: str
    score: float


class CourseIndex:
    """Term → (chunks, counts) in compressed sparse columns, plus each chunk's length in terms."""

    def __init__(
        self, course_id: str, revision: str, ids: Sequence[str], texts: Sequence[str], *, language: str | None = None
    ) -> None:
        self.course_id = course_id
        self.revision = revision
        self.language = analysed_language(language)
        self.ids = list(ids)
        self.rows = {id: row for row, id in enumerate(self.ids)}
        vocabulary: dict[str, int] = {}
        flat: list[int] = []
        lengths = np.zeros(len(self.ids), dtype=np.int64)
        for row, text in enumerate(texts):
            term_ids = [vocabulary.setdefault(term, len(vocabulary)) for term in terms(text, self.language)]
            flat.extend(term_ids)
            lengths[row] = len(term_ids)
        # one sort of (term, chunk) keys gives every term's chunks and counts, grouped by term
        rows = max(len(self.ids), 1)
        keys, counts = np.unique(np.asarray(flat, dtype=np.int64) * rows + np.repeat(np.arange(len(lengths)), lengths),
                                 return_counts=True)
        self.vocabulary = vocabulary
        self.docs = (keys % rows).astype(np.int32)
        self.counts = counts.astype(np.float32)
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(keys // rows, minlength=len(vocabulary)))])
        self.lengths = lengths.astype(np.float32)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        index = self.vocabulary.get(term)
        if index is None:
            return _EMPTY_INT, _EMPTY_FLOAT
        start, end = self.starts[index], self.starts[index + 1]
        return self.docs[start:end], self.counts[start:end]

    def frequency(self, term: str) -> int:
        index = self.vocabulary.get(term)
        return 0 if index is None else int(self.starts[index + 1] - self.starts[index])


_EMPTY_INT = np.zeros(0, dtype=np.int32)
_EMPTY_FLOAT = np.zeros(0, dtype=np.float32)


def term_weight(indexes: Sequence[CourseIndex], term: str) -> float:
    """BM25's inverse document frequency of a (stemmed) term over `indexes`: rare terms weigh most."""
    total = sum(len(index.ids) for index in indexes)
    frequency = sum(index.frequency(term) for index in indexes)
    return float(np.log(1.0 + (total - frequency + 0.5) / (frequency + 0.5)))


def search(
    indexes: Sequence[CourseIndex], query: str, *, limit: int, also: Collection[str] = ()
) -> list[KeywordHit]:
    """The `limit` best chunks for `query` by BM25 across `indexes`, best first, plus the chunks named in `also`
    (scored too, wherever they rank). Chunks sharing no term with the query are left out."""
    query_terms = {language: list(dict.fromkeys(terms(query, language)))
                   for language in {index.language for index in indexes}}
    total = sum(len(index.ids) for index in indexes)
    if not any(query_terms.values()) or total == 0:
        return []
    average_length = max(sum(float(index.lengths.sum()) for index in indexes) / total, 1.0)
    hits: list[KeywordHit] = []
    extra: list[KeywordHit] = []
    for index in indexes:
        weights = {term: term_weight(indexes, term) for term in query_terms[index.language] if index.frequency(term)}
        scores = np.zeros(len(index.ids), dtype=np.float32)
        norms = K1 * (1.0 - B + B * index.lengths / average_length)
        for term, weight in weights.items():
            docs, counts = index.postings(term)
            scores[docs] += weight * counts * (K1 + 1.0) / (counts + norms[docs])
        best = np.argpartition(-scores, limit)[:limit] if len(scores) > limit else np.arange(len(scores))
        hits.extend(KeywordHit(index.ids[i], index.course_id, float(scores[i])) for i in best if scores[i] > 0)
        rows = [index.rows[id] for id in also if id in index.rows]
        extra.extend(KeywordHit(index.ids[i], index.course_id, float(scores[i])) for i in rows if scores[i] > 0)
    hits.sort(key=lambda hit: hit.score, reverse=True)
    ranked = hits[:limit]
    named = {hit.chunk_id for hit in ranked}
    return ranked + [hit for hit in extra if hit.chunk_id not in named]


class KeywordIndexes:
    """Per-process cache of course indexes, rebuilt when a course's revision moves on."""

    def __init__(self, load: Callable[[str, str], tuple[list[str], list[str], str | None]]) -> None:
        self._load = load  # (course id, its revision) → (chunk ids, indexed texts, the course's language)
        self._indexes: dict[str, CourseIndex] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def for_courses(self, revisions: dict[str, str]) -> list[CourseIndex]:
        return [self._current(course_id, revision) for course_id, revision in sorted(revisions.items())]

    def _current(self, course_id: str, revision: str) -> CourseIndex:
        index = self._indexes.get(course_id)
        if index is not None and index.revision == revision:
            return index
        with self._guard:
            lock = self._locks.setdefault(course_id, threading.Lock())
        with lock:  # one build per course at a time; others wait for it rather than build it again
            index = self._indexes.get(course_id)
            if index is None or index.revision != revision:
                ids, texts, language = self._load(course_id, revision)
                index = CourseIndex(course_id, revision, ids, texts, language=language)
                self._indexes[course_id] = index
            return index
