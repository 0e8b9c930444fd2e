"""Putting course material into the store, touching only what changed.

Chunk ids are hashes of their text (under its lesson title and headings), so a re-ingest embeds only new or edited
chunks, updates the metadata of moved ones, and removes chunks whose text is gone. Each ingest owns a scope: a
course import owns the course's imported lessons, a folder owns the lessons read from it, a file its own lesson;
lessons missing from that scope are removed, and nothing outside it is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.text import counted
from knowledge.chunking import Chunk, chunk_lesson
from knowledge.sources import Lesson, UnreadableFile, course_files, read_lesson

if TYPE_CHECKING:
    from knowledge.settings import KnowledgeSettings
    from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks to embed)

IMPORT_ORIGIN = "import"


@dataclass
class IngestReport:
    course_id: str
    lessons: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, what was wrong)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        text = (
            f"Course {self.course_id}: {counted(self.lessons, 'lesson')}, "
            f"{counted(self.added, 'chunk')} added, {self.updated} updated, {self.removed} removed, "
            f"{self.unchanged} unchanged."
        )
        if self.failures:
            text += f" {counted(len(self.failures), 'file')} failed."
        return text


def ingest_lessons(
    course_id: str,
    lessons: Sequence[Lesson],
    *,
    settings: KnowledgeSettings,
    language: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """(Re)ingest an imported course's lessons; the course importer calls this after every import.

    `lessons` is the course's whole lesson list: `Lesson(lesson_id, title, text)` (Markdown text), or
    `read_lesson(path, lesson_id=...)` for a lesson kept in a file. Lessons imported earlier and missing now are
    removed; material added with `lessonbot ingest` is left alone. `language`: the course's (BCP 47, "es"), which
    chooses how its words are stemmed for the keyword search; None keeps what the store has (English at first).
    Blocking (it embeds): call it from a thread (`await asyncio.to_thread(ingest_lessons, ...)`) in async code.
    """
    from knowledge.store import open_store

    store = open_store(settings)
    return sync_lessons(store, course_id, lessons, origin=IMPORT_ORIGIN, progress=progress, language=language)


def ingest_path(
    store: KnowledgeStore, path: Path, *, course_id: str, progress: Progress | None = None
) -> IngestReport:
    """Ingest one file (its lesson id is the file name) or a folder (lesson ids are paths inside it).

    A file that cannot be read is reported in `failures`, and the rest goes on; its lesson keeps what an earlier
    ingest stored.
    """
    path = path.resolve()
    if path.is_dir():
        files = course_files(path)
        origin = f"folder:{path}"
        ids = {file: file.relative_to(path).as_posix() for file in files}
    elif path.is_file():
        files, origin, ids = [path], f"file:{path}", {path: path.name}
    else:
        raise FileNotFoundError(f"{path} does not exist: give a course file or folder")
    lessons, failures = [], []
    for file in files:
        try:
            lessons.append(read_lesson(file, lesson_id=ids[file]))
        except UnreadableFile as exc:
            log.warning("course file skipped", extra={"file": str(file), "reason": str(exc)})
            failures.append((str(file), str(exc)))
    report = sync_lessons(
        store, course_id, lessons, origin=origin, progress=progress,
        keep={ids[Path(file)] for file, _ in failures},
    )
    report.failures = failures
    return report


def sync_lessons(
    store: KnowledgeStore,
    course_id: str,
    lessons: Sequence[Lesson],
    *,
    origin: str,
    progress: Progress | None = None,
    keep: Collection[str] = frozenset(),
    language: str | None = None,
) -> IngestReport:
    """Make the store's chunks of `origin`'s scope in `course_id` match `lessons` exactly; `language` (None: as
    recorded) is recorded for the course."""
    report = IngestReport(course_id=course_id, lessons=len(lessons))
    wanted: list[Chunk] = [chunk for lesson in lessons for chunk in chunk_lesson(course_id, lesson, origin=origin)]
    given = {lesson.lesson_id for lesson in lessons}

    def in_scope(meta: dict[str, Any]) -> bool:
        lesson_id = meta.get("lesson_id")
        if lesson_id in keep:
            return False
        # a scope always owns its own lessons; a single file owns nothing else
        return lesson_id in given or (meta.get("origin") == origin and not origin.startswith("file:"))

    existing = {id: meta for id, meta in store.chunk_metadata(course_id).items() if in_scope(meta)}
    wanted_ids = {chunk.id for chunk in wanted}
    to_add = [chunk for chunk in wanted if chunk.id not in existing]
    to_update = [chunk for chunk in wanted if chunk.id in existing and existing[chunk.id] != chunk.metadata()]
    to_remove = [id for id in existing if id not in wanted_ids]

    report.added, report.updated, report.removed = len(to_add), len(to_update), len(to_remove)
    report.unchanged = len(wanted) - len(to_add) - len(to_update)
    wrote = False  # anything of the course changed in the store, even by a step that then failed
    try:
        if to_remove:
            wrote = True
            store.delete(course_id, to_remove)
            if to_add or to_update:
                # At once, not after the embedding (minutes, for a large course): every process reads the course
                # again without what was removed, rather than quote a lesson the course no longer has meanwhile.
                store.mark_changed(course_id)
        if to_add:
            done = 0

            def advance(count: int) -> None:
                nonlocal done, wrote
                wrote = True
                done += count
                if progress:
                    progress(done, len(to_add))

            if progress:
                progress(0, len(to_add))
            store.add(to_add, on_progress=advance)
        if to_update:
            # chunks stored before sentences had vectors of their own get them now, and so do chunks whose text is
            # cut into sentences differently than when they were stored (knowledge.terms: an abbreviation no longer
            # ends one); embedded before their metadata counts the new sentences, so an ingest stopped between the two
            # leaves the count that tells the next one (and the retriever) the vectors are not these sentences'
            unembedded = [chunk for chunk in to_update if existing[chunk.id].get("sentences") != len(chunk.units)]
            if unembedded:
                log.info("embedding the sentences of chunks stored without them, or cut into sentences otherwise",
                         extra={"course_id": course_id, "chunks": len(unembedded)})
                wrote = True
                store.add_sentences(unembedded)
            wrote = True
            store.update_metadata(to_update)
    except BaseException:
        # A new revision after any write, even one stopped half way (an embedding endpoint failing mid-ingest):
        # every process then reads the course again, where what it keeps in memory (knowledge/resident.py) would
        # go on serving the chunks deleted before the failure. The failure itself is what the caller hears.
        if wrote:
            try:
                store.mark_changed(course_id)
            except Exception:
                log.warning("could not give the course a new revision after a failed ingest: ingest it again",
                            extra={"course_id": course_id}, exc_info=True)
        raise
    if report.changed or (language and language != store.language(course_id)):
        # a course whose language changed (or a store made before languages were recorded) is indexed again too
        store.mark_changed(course_id, language=language)
    log.info(
        "course ingested",
        extra={"course_id": course_id, "added": report.added, "updated": report.updated, "removed": report.removed},
    )
    return report
