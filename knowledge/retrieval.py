"""Finding the passages of the learner's courses that answer a question: keyword (BM25) and dense vectors, fused.

Only the courses in `allowed_courses` are searched, on both sides (the keyword indexes are per course, the vector
query is filtered by course id), and every passage is checked against the set once more before it is returned:
a learner never receives material from a course they are not entitled to.

Fusion: each candidate from either side gets both scores, and ranks by BM25 (divided by the best BM25 score of the
question) plus 1.5 × cosine similarity. Reciprocal rank fusion brought depth but lost top-1 against BM25 alone
on the SQuAD paragraphs; this weighted score keeps BM25's top-1 and adds the dense side's depth (docs/knowledge.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np

from knowledge import keyword
from knowledge.keyword import KeywordIndexes
from knowledge.store import KnowledgeStore, StoredChunk

Mode = Literal["hybrid", "dense", "keyword"]

CANDIDATES = 30  # from each side
# (keyword, dense) weights of the fused score; the modes besides hybrid are there to compare against
WEIGHTS: dict[str, tuple[float, float]] = {"hybrid": (1.0, 1.5), "dense": (0.0, 1.0), "keyword": (1.0, 0.0)}


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

    @property
    def where(self) -> str:
        """How a learner would name the place: the lesson title, and the section when there is one."""
        section = self.heading_path.split(" > ")[-1] if self.heading_path else ""
        return f"{self.lesson_title} › {section}" if section and section != self.lesson_title else self.lesson_title


class Retriever:
    def __init__(self, store: KnowledgeStore, *, mode: Mode = "hybrid") -> None:
        self.store = store
        self.mode = mode
        self.indexes = KeywordIndexes(self._course_texts)

    def _course_texts(self, course_id: str) -> tuple[list[str], list[str]]:
        chunks = self.store.chunk_texts(course_id)
        return [chunk.id for chunk in chunks], [chunk.indexed_text for chunk in chunks]

    def retrieve(self, question: str, *, allowed_courses: Collection[str], limit: int = 5) -> list[Passage]:
        """The `limit` best passages for `question` from `allowed_courses` only, best first."""
        revisions = self.store.revisions(sorted(allowed_courses))
        courses = sorted(revisions)
        if not courses or not question.strip():
            return []

        similarities: dict[str, float] = {}
        found: dict[str, StoredChunk] = {}
        if self.mode != "keyword":
            vector = np.asarray(self.store.embedder.embed([question])[0], dtype=np.float32)
            for neighbour in self.store.nearest(vector, courses=courses, limit=CANDIDATES):
                found[neighbour.id] = neighbour
                similarities[neighbour.id] = 1.0 - float(neighbour.distance or 0.0)

        keyword_hits: dict[str, float] = {}
        course_of = {id: str(chunk.metadata.get("course_id")) for id, chunk in found.items()}
        if self.mode != "dense":
            indexes = self.indexes.for_courses(revisions)
            # the dense side's candidates get their BM25 score too, wherever they rank
            hits = keyword.search(indexes, question, limit=CANDIDATES, also=list(similarities))
            keyword_hits = {hit.chunk_id: hit.score for hit in hits}
            course_of.update((hit.chunk_id, hit.course_id) for hit in hits)
        if self.mode == "hybrid":
            missing = _by_course([id for id in keyword_hits if id not in similarities], course_of)
            for id, stored in self.store.vectors(missing).items():
                similarities[id] = float(np.dot(vector, np.asarray(stored, dtype=np.float32)))

        best_keyword = max(keyword_hits.values(), default=0.0) or 1.0
        candidates = set(keyword_hits) | set(similarities)
        keyword_weight, dense_weight = WEIGHTS[self.mode]

        def score(id: str) -> float:
            return keyword_weight * keyword_hits.get(id, 0.0) / best_keyword + dense_weight * similarities.get(id, 0.0)

        ranked = sorted(candidates, key=score, reverse=True)[:limit]
        found.update(self.store.fetch(_by_course([id for id in ranked if id not in found], course_of)))
        passages = []
        for id in ranked:
            chunk = found.get(id)
            if chunk is None or chunk.metadata.get("course_id") not in allowed_courses:
                continue  # deleted meanwhile, or (never expected) outside the learner's courses
            meta = chunk.metadata
            passages.append(
                Passage(
                    chunk_id=id,
                    course_id=str(meta["course_id"]),
                    lesson_id=str(meta.get("lesson_id", "")),
                    lesson_title=str(meta.get("lesson_title", "")),
                    heading_path=str(meta.get("heading_path", "")),
                    source=str(meta.get("source", "")),
                    text=chunk.text,
                    score=score(id),
                    similarity=similarities.get(id, 0.0),
                    keyword_score=keyword_hits.get(id, 0.0) / best_keyword,
                )
            )
        return passages

    def rarity(self, allowed_courses: Collection[str]) -> Callable[[str], float]:
        """A term's weight (BM25's idf) over `allowed_courses`: rare words say most about what is asked."""
        indexes = self.indexes.for_courses(self.store.revisions(sorted(allowed_courses)))
        return lambda term: keyword.term_weight(indexes, term)


def _by_course(ids: list[str], course_of: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for id in ids:
        grouped.setdefault(course_of[id], []).append(id)
    return grouped
