"""Answers from the course material: ingest, embed, store in Chroma, retrieve, answer with sources.

The doors in:
- `knowledge.ingest.ingest_lessons(course_id, lessons, settings=...)`: the course importer's call after an import;
- `knowledge.answerer.Answerer(settings, database=...).answer(question, learner=..., allowed_courses=...)`: the
  dialogs' call for a question no step expects (a `CourseAnswer`: text and sources, or why there is none);
- `lessonbot ingest | eval knowledge | bench knowledge` (bot/cli/knowledge.py, bench/knowledge.py).

Never channel-specific: answers are plain text, rendered and escaped by each channel like any other reply.
"""
