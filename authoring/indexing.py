"""A course's lessons into the knowledge store, so the question answerer searches what was imported.

Only what changed is embedded again (knowledge.ingest); the import owns the course's imported lessons in the store,
so material ingested from elsewhere for the same course is left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authoring.format import Course
    from knowledge.settings import KnowledgeSettings


def ingest_course(course: Course, settings: KnowledgeSettings) -> str:
    """Bring the store in line with `course`'s lessons; the report's one-line summary. Blocking: run it in a thread
    from async code."""
    from knowledge.ingest import ingest_lessons
    from knowledge.sources import Lesson as Material

    lessons = [Material(lesson.id, lesson.title, "\n\n".join(lesson.parts), source=lesson.file)
               for lesson in course.lessons]
    return ingest_lessons(course.id, lessons, settings=settings, language=course.language).summary()
