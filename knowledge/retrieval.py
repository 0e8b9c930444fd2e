"""Finding the passages of the learner's courses that answer a question: keyword (BM25) and dense vectors, fused.

Only the courses in `allowed_courses` are searched, on both sides (the keyword indexes are per course, the vector
query is filtered by course id), and every passage is checked against the set once more before it is returned:
a learner never receives material from a course they are not entitled to.

Two stages. First, each candidate from either side gets both scores and ranks by BM25 (divided by the best BM25 score
of the question) plus 1.5 × cosine similarity: this fused score keeps BM25's top-1 and adds the dense side's depth.
Then its best `RERANKED` are ranked again by a fitted linear model (knowledge/ranking.py) over passage- and
sentence-level evidence: each sentence's own vector (stored at ingest), how much of the question's rare words a
sentence or two neighbouring sentences hold, and the question's word pairs found side by side
(docs/knowledge.md has the figures).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from knowledge import keyword, ranking
from knowledge.embeddings import unit_rows
from knowledge.keyword import KeywordIndexes
from knowledge.resident import ResidentCourse, ResidentCourses
from knowledge.store import KnowledgeStore, StoredChunk
from knowledge.terms import DEFAULT_LANGUAGE

log = logging.getLogger(__name__)

# hybrid: fused, then re-ranked; the other modes are there to compare against
Mode = Literal["hybrid", "fused", "dense", "keyword"]

CANDIDATES = 30  # from each side
RERANKED = 20  # the fused score's best, ranked again on all the evidence
# (keyword, dense) weights of the fused score
WEIGHTS: dict[str, tuple[float, float]] = {
    "hybrid": (1.0, 1.5), "fused": (1.0, 1.5), "dense": (0.0, 1.0), "keyword": (1.0, 0.0)
}
SENTENCE_VECTORS_CACHED = 4000  # chunks whose sentence vectors a process keeps (about 9 kB each)
CHUNK_VECTORS_CACHED = 20_000  # chunks whose own vector a process keeps (1.5 kB each)


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    course_id: str
    lesson_id: str
    lesson_title: str
    heading_path: str
    source: str
    text: str
    score: float
    similarity: float  # cosine similarity to the question (0 when not computed: keyword mode)
    keyword_score: float  # BM25 relative to the question's best chunk, 0..1
    sentence_similarities: tuple[float, ...] = ()  # each quotable unit's (knowledge.terms.quotable_units)
    language: str = DEFAULT_LANGUAGE  # its course's, as its words are analysed (knowledge.terms.analysed_language)

    @property
    def where(self) -> str:
        """How a learner would name the place: the lesson title, and the section when there is one."""
        section = self.heading_path.split(" > ")[-1] if self.heading_path else ""
        return f"{self.lesson_title} › {section}" if section and section != self.lesson_title else self.lesson_title

    @property
    def headings(self) -> str:
        return f"{self.lesson_title} {self.heading_path}"


@dataclass(frozen=True)
class Candidate:
    """A passage the first stage found, with what the ranking weighs."""

    chunk: StoredChunk
    keyword: float  # BM25 relative to the question's best chunk
    similarity: float
    fused: float
    sentence_similarities: tuple[float, ...]
    features: tuple[float, ...]  # ranking.PASSAGE_FEATURES (empty outside hybrid mode)
    language: str = DEFAULT_LANGUAGE  # its course's

    def passage(self, score: float) -> Passage:
        meta = self.chunk.metadata
        return Passage(
            chunk_id=self.chunk.id,
            course_id=str(meta["course_id"]),
            lesson_id=str(meta.get("lesson_id", "")),
            lesson_title=str(meta.get("lesson_title", "")),
            heading_path=str(meta.get("heading_path", "")),
            source=str(meta.get("source", "")),
            text=self.chunk.text,
            score=score,
            similarity=self.similarity,
            keyword_score=self.keyword,
            sentence_similarities=self.sentence_similarities,
            language=self.language,
        )


@dataclass(frozen=True)
class Found:
    """A question's passages, best first, and the term weights they were ranked with (the extractive answer weighs
    the question's words the same way, without reading the courses' revisions again)."""

    passages: list[Passage]
    rarity: Callable[[str], float]
    # the courses asked for that are not in the store at all (never indexed, or the store lost or made anew): no
    # passage of theirs could be found, which says nothing of what they teach
    unindexed: frozenset[str] = frozenset()


K = TypeVar("K")
V = TypeVar("V")


class _Kept(Generic[K, V]):
    """The last `size` values read from the store, by key, for any thread (least recently used dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, keys: Collection[K]) -> dict[K, V]:
        with self._lock:
            found = {key: self._values[key] for key in keys if key in self._values}
            for key in found:
                self._values.move_to_end(key)
        return found

    def put(self, values: dict[K, V]) -> None:
        with self._lock:
            self._values.update(values)
            for key in values:
                self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)


class Retriever:
    def __init__(self, store: KnowledgeStore, *, mode: Mode = "hybrid") -> None:
        self.store = store
        self.mode = mode
        self.resident = ResidentCourses(store.chunks_and_vectors)
        self.indexes = KeywordIndexes(self._course_texts)
        self._kept_sentence_vectors: _Kept[str, np.ndarray] = _Kept(SENTENCE_VECTORS_CACHED)
        # a chunk's id hashes its text, so its vector never goes stale
        self._chunk_vectors: _Kept[str, np.ndarray] = _Kept(CHUNK_VECTORS_CACHED)

    def _course_texts(self, course_id: str, revision: str) -> tuple[list[str], list[str], str | None]:
        # a course kept in the process at this revision is not read twice
        kept = self.resident.kept(course_id, revision)
        chunks = kept.chunks if kept is not None else self.store.chunk_texts(course_id)
        return [chunk.id for chunk in chunks], [chunk.indexed_text for chunk in chunks], self.store.language(course_id)

    def retrieve(self, question: str, *, allowed_courses: Collection[str], limit: int = 5) -> list[Passage]:
        """The `limit` best passages for `question` from `allowed_courses` only, best first."""
        return self.search(question, allowed_courses=allowed_courses, limit=limit).passages

    def search(self, question: str, *, allowed_courses: Collection[str], limit: int = 5) -> Found:
        """The same passages, with the term weights of the courses' revisions they came from."""
        candidates, rarity, unindexed = self._candidates(question, allowed_courses)
        return Found(self.rank(candidates)[:limit], rarity, unindexed)

    def rank(self, candidates: list[Candidate]) -> list[Passage]:
        """The candidates as passages, best first: by the fitted model in hybrid mode, else by the fused score."""
        if self.mode == "hybrid" and candidates:
            scores = ranking.models().passages.scores([c.features for c in candidates]).tolist()
        else:
            scores = [c.fused for c in candidates]
        order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
        return [candidates[i].passage(scores[i]) for i in order]

    def candidates(self, question: str, *, allowed_courses: Collection[str]) -> list[Candidate]:
        """The first stage: the best candidates of both sides by the fused score, with their evidence."""
        return self._candidates(question, allowed_courses)[0]

    def _candidates(
        self, question: str, allowed_courses: Collection[str]
    ) -> tuple[list[Candidate], Callable[[str], float], frozenset[str]]:
        revisions, sizes = self.store.revisions_and_sizes(sorted(allowed_courses))
        seen_at = time.monotonic()
        unindexed = frozenset(allowed_courses) - revisions.keys()
        if not revisions or not question.strip():
            return [], self._rarity([]), unindexed

        resident = self.resident.for_courses(revisions, sizes, seen_at=seen_at)
        # the keyword side over the same text as the kept copies (one may be newer than the revision read above)
        revisions |= {course_id: course.revision for course_id, course in resident.items()}
        similarities: dict[str, float] = {}
        found: dict[str, StoredChunk] = {}
        vector = unit = np.zeros(0, dtype=np.float32)
        if self.mode != "keyword":
            vector = np.asarray(self.store.embedder.embed([question])[0], dtype=np.float32)
            unit = unit_rows(vector)  # products with it are cosines, whatever the length of the model's vectors
            for neighbour in self._nearest(vector, unit, sizes, resident):
                found[neighbour.id] = neighbour
                similarities[neighbour.id] = 1.0 - float(neighbour.distance or 0.0)

        keyword_hits: dict[str, float] = {}
        course_of = {id: str(chunk.metadata.get("course_id")) for id, chunk in found.items()}
        indexes = self.indexes.for_courses(revisions) if self.mode != "dense" else []
        if indexes:
            # the dense side's candidates get their BM25 score too, wherever they rank
            hits = keyword.search(indexes, question, limit=CANDIDATES, also=list(similarities))
            keyword_hits = {hit.chunk_id: hit.score for hit in hits}
            course_of.update((hit.chunk_id, hit.course_id) for hit in hits)
        if self.mode in ("hybrid", "fused"):
            wanted = [id for id in keyword_hits if id not in similarities]
            for id, stored in self._vectors(wanted, course_of, resident).items():
                similarities[id] = float(np.dot(unit, stored))  # the cosine, as the dense side's

        best_keyword = max(keyword_hits.values(), default=0.0) or 1.0
        keyword_weight, dense_weight = WEIGHTS[self.mode]

        def fused(id: str) -> float:
            return keyword_weight * keyword_hits.get(id, 0.0) / best_keyword + dense_weight * similarities.get(id, 0.0)

        kept = sorted(set(keyword_hits) | set(similarities), key=fused, reverse=True)
        kept = kept[: RERANKED if self.mode == "hybrid" else CANDIDATES]
        found.update(self._fetch([id for id in kept if id not in found], course_of, resident))
        # deleted meanwhile, or (never expected) outside the learner's courses
        chunks = [found[id] for id in kept if id in found and found[id].metadata.get("course_id") in allowed_courses]
        # the answer weighs the question's words by the courses' statistics whatever side searched them
        indexes = indexes if self.mode != "dense" else self.indexes.for_courses(revisions)
        rarity = self._rarity(indexes)
        languages = {index.course_id: index.language for index in indexes}
        if self.mode != "hybrid":
            return ([Candidate(chunk, keyword_hits.get(chunk.id, 0.0) / best_keyword, similarities.get(chunk.id, 0.0),
                               fused(chunk.id), (), (), _language(chunk, languages)) for chunk in chunks],
                    rarity, unindexed)

        best_fused = max((fused(chunk.id) for chunk in chunks), default=0.0) or 1.0
        # the question read as each course's words are
        asked = {language: ranking.Question.of(question, rarity, language)
                 for language in {_language(chunk, languages) for chunk in chunks}}
        sentence_vectors = self._sentence_vectors(chunks, languages)
        candidates = []
        for chunk in chunks:
            language = _language(chunk, languages)
            analysed = ranking.analyse(chunk.id, chunk.text, _headings(chunk), language)
            vectors = sentence_vectors.get(chunk.id)
            cosines = tuple((vectors @ unit).tolist()) if vectors is not None else ()
            keyword_share = keyword_hits.get(chunk.id, 0.0) / best_keyword
            similarity = similarities.get(chunk.id, 0.0)
            features = ranking.passage_features(
                asked[language], analysed, fused=fused(chunk.id) / best_fused, keyword=keyword_share, cosine=similarity,
                sentence_cosines=cosines,
            )
            candidates.append(Candidate(chunk, keyword_share, similarity, fused(chunk.id), cosines, tuple(features),
                                        language))
        return candidates, rarity, unindexed

    def _nearest(
        self, vector: np.ndarray, unit: np.ndarray, sizes: dict[str, int], resident: dict[str, ResidentCourse]
    ) -> list[StoredChunk]:
        """The dense side: the chunks nearest the question's vector (`unit`: the same of unit length), from the kept
        courses and the store's index."""
        found = [chunk for course in resident.values() for chunk in course.nearest(unit, CANDIDATES)]
        elsewhere = {course_id: size for course_id, size in sizes.items() if course_id not in resident}
        if elsewhere:
            found.extend(self.store.nearest(vector, sizes=elsewhere, limit=CANDIDATES))
        found.sort(key=lambda chunk: chunk.distance or 0.0)
        return found[:CANDIDATES]

    def _fetch(
        self, ids: list[str], course_of: dict[str, str], resident: dict[str, ResidentCourse]
    ) -> dict[str, StoredChunk]:
        found: dict[str, StoredChunk] = {}
        elsewhere: dict[str, list[str]] = {}
        for course_id, course_ids in _by_course(ids, course_of).items():
            if course_id in resident:
                found.update(resident[course_id].get(course_ids))
            else:
                elsewhere[course_id] = course_ids
        return found | self.store.fetch(elsewhere) if elsewhere else found

    def _vectors(
        self, ids: list[str], course_of: dict[str, str], resident: dict[str, ResidentCourse]
    ) -> dict[str, np.ndarray]:
        """The chunks' own vectors, of unit length: from the kept courses, else kept in the process, else from the
        store."""
        found: dict[str, np.ndarray] = {}
        for id in ids:
            course = resident.get(course_of[id])
            stored = course.vector(id) if course is not None else None
            if stored is not None:
                found[id] = stored
        ids = [id for id in ids if id not in found]
        found |= self._chunk_vectors.get(ids)
        read = {id: unit_rows(vector) for id, vector in
                self.store.vectors(_by_course([id for id in ids if id not in found], course_of)).items()}
        self._chunk_vectors.put(read)
        return found | read

    def _sentence_vectors(self, chunks: list[StoredChunk], languages: dict[str, str]) -> dict[str, np.ndarray]:
        """Each chunk's sentence vectors: kept in the process, else from the store, else (a chunk stored before
        sentences had vectors, or whose text an earlier version cut into other sentences, until the next ingest of
        its course) embedded now."""
        found = self._kept_sentence_vectors.get([chunk.id for chunk in chunks])
        wanted: dict[str, dict[str, int]] = {}
        for chunk in chunks:
            if chunk.id not in found and "sentences" in chunk.metadata:
                wanted.setdefault(str(chunk.metadata["course_id"]), {})[chunk.id] = int(chunk.metadata["sentences"])
        read = self.store.sentence_vectors(wanted) if wanted else {}
        units = {chunk.id: ranking.analyse(chunk.id, chunk.text, _headings(chunk),
                                           _language(chunk, languages)).units for chunk in chunks}
        # none stored, or stored for the chunk's text cut into sentences otherwise (by a version before this one)
        unembedded = [chunk for chunk in chunks if chunk.id not in found
                      and len(read.get(chunk.id, ())) != len(units[chunk.id])]
        if unembedded:
            log.warning("passages without sentence vectors, or with vectors of other sentences: ingest their course "
                        "again (`lessonbot ingest`, or import it again) to store them",
                        extra={"chunks": len(unembedded)})
            for chunk in unembedded:
                read[chunk.id] = np.asarray(self.store.embedder.embed(list(units[chunk.id])), dtype=np.float32)
        # rows of unit length, so that their products with the question's are cosines whatever the model gives
        read = {id: unit_rows(rows) for id, rows in read.items()}
        self._kept_sentence_vectors.put(read)
        return found | read

    def _rarity(self, indexes: list[keyword.CourseIndex]) -> Callable[[str], float]:
        return lambda term: keyword.term_weight(indexes, term)

    def rarity(self, allowed_courses: Collection[str]) -> Callable[[str], float]:
        """A term's weight (BM25's idf) over `allowed_courses`: rare words say most about what is asked."""
        revisions = self.store.revisions(sorted(allowed_courses))
        seen_at = time.monotonic()
        # the index of a kept copy's text, as `candidates` uses (it may be newer than the revision just read)
        revisions |= {course_id: kept.revision for course_id, revision in revisions.items()
                      if (kept := self.resident.kept(course_id, revision, seen_at)) is not None}
        return self._rarity(self.indexes.for_courses(revisions))


def _by_course(ids: list[str], course_of: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for id in ids:
        grouped.setdefault(course_of[id], []).append(id)
    return grouped


def _language(chunk: StoredChunk, languages: dict[str, str]) -> str:
    """The language the chunk's course is analysed in (`languages`: course id → language)."""
    return languages.get(str(chunk.metadata.get("course_id", "")), DEFAULT_LANGUAGE)


def _headings(chunk: StoredChunk) -> str:
    return f"{chunk.metadata.get('lesson_title', '')} {chunk.metadata.get('heading_path', '')}"
