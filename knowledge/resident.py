"""The courses a process keeps in memory: each chunk's text, metadata and vector, read once per revision of the course.

A question's retrieval then costs the store one read (the courses' revisions) instead of four: the nearest chunks
are one product of the question's vector with the course's vectors (exact, where the store's index is approximate: on
squad-dev's 829 chunks the two agree on 99.9 % of the 30 nearest), and the passages' text and the vectors of the
keyword side's candidates come from memory. Measured on squad-dev's course (AMD EPYC, 2 cores): the store's vector
query took 4.7 ms a question and reading 20 chunks by id 2.7 ms, the product 0.09 ms.

A course is kept at the revision the store gives it, so an ingest made by another process (which gives the course a
new revision) is read again at the next question, as the keyword index is (knowledge/keyword.py); a question that
saw the older revision after a newer copy began to be read takes that copy, which holds at least as much. The kept
chunks are bounded (`RESIDENT_CHUNKS` in all, given to the courses first asked about); a course there is no room for
is searched in the store, as every course was before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import unit_rows
from knowledge.store import StoredChunk

log = logging.getLogger(__name__)

# Chunks a process keeps in all: each about 3 kB with the offline model (a vector of 384 numbers, a paragraph and its
# metadata), so at most some 60 MB; 7.5 kB with a model of 1,536 dimensions (150 MB). A course of hundreds of chunks
# takes a few hundred kB.
RESIDENT_CHUNKS = 20_000
UNREADABLE_SECONDS = 60.0  # a course whose read failed is searched in the store this long before it is tried again


@dataclass(frozen=True)
class ResidentCourse:
    """One course's chunks at one revision, with their vectors (one row each, of unit length)."""

    course_id: str
    revision: str
    chunks: tuple[StoredChunk, ...]
    vectors: np.ndarray
    rows: dict[str, int]
    read_at: float  # time.monotonic() when its read began: it holds at least what the store held then

    @classmethod
    def of(
        cls, course_id: str, revision: str, chunks: Sequence[StoredChunk], vectors: np.ndarray, *, read_at: float
    ) -> ResidentCourse:
        unit = unit_rows(np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1) if chunks else np.zeros((0, 1)))
        rows = {chunk.id: row for row, chunk in enumerate(chunks)}
        return cls(course_id, revision, tuple(chunks), unit, rows, read_at)

    def nearest(self, vector: np.ndarray, limit: int) -> list[StoredChunk]:
        """The `limit` chunks most similar to `vector` (of unit length), closest first; `distance` is the cosine
        distance, as the store gives it."""
        if not self.chunks or limit <= 0:
            return []
        similarities = self.vectors @ vector
        top = np.argpartition(-similarities, limit - 1)[:limit] if limit < len(self.chunks) else np.arange(
            len(self.chunks))
        top = top[np.argsort(-similarities[top], kind="stable")]
        return [_at(self.chunks[row], 1.0 - float(similarities[row])) for row in top.tolist()]

    def get(self, ids: Collection[str]) -> dict[str, StoredChunk]:
        return {id: self.chunks[self.rows[id]] for id in ids if id in self.rows}

    def vector(self, id: str) -> np.ndarray | None:
        row = self.rows.get(id)
        return None if row is None else self.vectors[row]


def _at(chunk: StoredChunk, distance: float) -> StoredChunk:
    return StoredChunk(chunk.id, chunk.text, chunk.metadata, distance)


class ResidentCourses:
    """The kept courses, by course id, each at the last revision read; safe for any thread.

    Room is given first come: a course is read only while the courses kept (other than its own older revision)
    leave room for it, and nothing kept is let go for another course, so two learners' large courses never take
    turns being read; a course there is no room for is searched in the store."""

    def __init__(
        self,
        load: Callable[[str], tuple[list[StoredChunk], np.ndarray]],
        *,
        budget: int = RESIDENT_CHUNKS,
    ) -> None:
        self._load = load  # course id → its chunks and their vectors, as the store holds them now
        self.budget = budget
        self._kept: dict[str, ResidentCourse] = {}
        self._reading: dict[str, int] = {}  # course id → the chunks its read will bring (room held for it)
        self._unreadable: dict[str, tuple[str, float]] = {}  # course id → (revision, when) of a read that failed
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def for_courses(
        self, revisions: dict[str, str], sizes: dict[str, int], *, seen_at: float | None = None
    ) -> dict[str, ResidentCourse]:
        """The courses of `revisions` (course id → revision, as the store gave them at `seen_at`, a time.monotonic()
        taken once they were read) kept at that revision, or read after `seen_at` (a copy that holds at least as
        much: another process's ingest gave the course a newer revision meanwhile, and a question that saw the older
        one does not read the course again); read now where there is room for them (`sizes`: course id → its
        chunks). The others are left out, for the store to search. A kept copy's `revision` is what it holds."""
        return {
            course_id: course
            for course_id, revision in sorted(revisions.items())
            if (course := self._current(course_id, revision, sizes.get(course_id, 0), seen_at)) is not None
        }

    def kept(self, course_id: str, revision: str, seen_at: float | None = None) -> ResidentCourse | None:
        """The course if it is kept at `revision`, or read after `seen_at` (nothing is read)."""
        course = self._kept.get(course_id)
        if course is None:
            return None
        return course if course.revision == revision or (seen_at is not None and course.read_at >= seen_at) else None

    def _current(self, course_id: str, revision: str, size: int, seen_at: float | None) -> ResidentCourse | None:
        course = self.kept(course_id, revision, seen_at)
        if course is not None:
            return course
        with self._guard:
            lock = self._locks.setdefault(course_id, threading.Lock())
        with lock:  # one read per course at a time; the others wait for it rather than read it again
            course = self.kept(course_id, revision, seen_at)
            if course is not None:
                return course
            self._let_go(course_id)  # an earlier revision, of no use now: its room is the new one's
            failed = self._unreadable.get(course_id)
            if failed is not None and failed[0] == revision and time.monotonic() - failed[1] < UNREADABLE_SECONDS:
                return None  # not every question waits for a read that just failed
            if not self._hold_room(course_id, size):
                return None
            try:
                read_at = time.monotonic()
                chunks, vectors = self._load(course_id)
                if len(chunks) > size and not self._hold_room(course_id, len(chunks)):  # it grew since
                    return None
                course = ResidentCourse.of(course_id, revision, chunks, vectors, read_at=read_at)
            except Exception:
                # a store that failed to give the whole course (a Chroma server's timeout …): searched in the store
                log.warning("could not read the course into the process; searching it in the store",
                            extra={"course_id": course_id}, exc_info=True)
                self._unreadable[course_id] = (revision, time.monotonic())
                return None
            finally:
                with self._guard:
                    self._reading.pop(course_id, None)
            with self._guard:
                self._kept[course_id] = course
        return course

    def _hold_room(self, course_id: str, size: int) -> bool:
        """Hold room for `size` chunks of the course if the other courses kept or being read leave it."""
        with self._guard:
            taken = sum(len(kept.chunks) for kept in self._kept.values())
            taken += sum(chunks for id, chunks in self._reading.items() if id != course_id)
            if taken + size > self.budget:
                return False
            self._reading[course_id] = size
            return True

    def _let_go(self, course_id: str) -> None:
        with self._guard:
            self._kept.pop(course_id, None)
