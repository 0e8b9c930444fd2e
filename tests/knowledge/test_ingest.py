"""Ingest: every format, heading-aware chunks with their provenance, re-ingest touching only what changed."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.cli import main
from knowledge.chunking import chunk_lesson
from knowledge.ingest import ingest_lessons, ingest_path
from knowledge.retrieval import Retriever
from knowledge.settings import KnowledgeSettings
from knowledge.sources import Lesson, read_lesson
from knowledge.store import StoreUnavailable, open_store
from tests.knowledge.conftest import PHOTOSYNTHESIS, VOLCANOES


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows `text` (what a PDF exporter writes, with the offsets computed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_every_format_becomes_chunks_that_know_where_they_came_from(offline_settings, course_dir: Path):
    (course_dir / "extra").mkdir()
    (course_dir / "extra" / "glossary.html").write_text(
        "<html><head><title>Glossary</title><script>var x = 'not course text';</script></head><body>"
        "<h1>Glossary</h1><h2>Stomata</h2><p>Stomata are pores in a leaf that let gases in and out.</p></body></html>"
    )
    (course_dir / "notes.txt").write_text("Xylem carries water up from the roots.\n\nPhloem carries sugar.")
    (course_dir / "handout.pdf").write_bytes(minimal_pdf("Chloroplasts hold the chlorophyll."))
    store = open_store(offline_settings)

    report = ingest_path(store, course_dir, course_id="bio")

    assert report.failures == []
    assert report.lessons == 5
    chunks = {c.id: c for c in store.chunk_texts("bio")}
    by_lesson = {}
    for chunk in chunks.values():
        by_lesson.setdefault(chunk.metadata["lesson_id"], []).append(chunk)
    assert set(by_lesson) == {"photosynthesis.md", "respiration.md", "extra/glossary.html", "notes.txt", "handout.pdf"}
    calvin = next(c for c in by_lesson["photosynthesis.md"] if "stroma" in c.text)
    assert calvin.metadata["heading_path"] == "Photosynthesis > Calvin cycle"
    assert calvin.metadata["lesson_title"] == "Photosynthesis"
    assert calvin.metadata["course_id"] == "bio"
    assert calvin.metadata["source"] == str(course_dir / "photosynthesis.md")
    assert PHOTOSYNTHESIS[calvin.metadata["start"]:].startswith(calvin.text[:40])
    positions = sorted(c.metadata["position"] for c in by_lesson["photosynthesis.md"])
    assert positions == list(range(len(positions)))
    glossary = by_lesson["extra/glossary.html"][0]
    assert glossary.metadata["heading_path"] == "Glossary > Stomata"
    assert "not course text" not in glossary.text
    assert "Chloroplasts hold the chlorophyll." in by_lesson["handout.pdf"][0].text


def test_reingest_embeds_only_what_changed_and_removes_what_was_deleted(offline_settings, course_dir: Path):
    store = open_store(offline_settings)
    first = ingest_path(store, course_dir, course_id="bio")
    assert first.added > 0 and first.unchanged == 0

    again = ingest_path(store, course_dir, course_id="bio")
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, first.added)

    (course_dir / "photosynthesis.md").write_text(PHOTOSYNTHESIS.replace("in the stroma", "in the chloroplast stroma"))
    (course_dir / "respiration.md").unlink()
    (course_dir / "volcanoes.md").write_text(VOLCANOES)
    edited = ingest_path(store, course_dir, course_id="bio")

    texts = [c.text for c in store.chunk_texts("bio")]
    assert edited.added == 2  # the edited section, and the new lesson
    assert edited.removed == 2  # the old section, and the deleted lesson
    assert not any("mitochondria" in t for t in texts)
    assert any("chloroplast stroma" in t for t in texts)
    assert not any("takes place in the stroma" in t for t in texts)
    assert any("tectonic plates" in t for t in texts)


def test_two_threads_open_a_new_store_at_once_and_a_store_removed_since_is_opened_afresh(
    offline_settings, course_dir: Path
):
    """Embedded Chroma cannot start one folder's store from two threads at once (an import ingesting in a worker
    thread while the answerer opens the store): each folder is opened once per process, and shared."""
    for attempt in range(3):
        settings = replace(offline_settings, chroma_path=offline_settings.chroma_path / str(attempt))
        start = threading.Barrier(2)

        def ingest(course: str, settings: KnowledgeSettings = settings, start: threading.Barrier = start) -> int:
            start.wait()
            return ingest_path(open_store(settings), course_dir, course_id=course).added

        with ThreadPoolExecutor(2) as pool:
            added = list(pool.map(ingest, ["bio", "bio-copy"]))
        assert added[0] > 0 and added == [added[0]] * 2

    shutil.rmtree(offline_settings.chroma_path / "0")  # a scratch store removed, and made again at the same path
    again = replace(offline_settings, chroma_path=offline_settings.chroma_path / "0")
    assert open_store(again).count() == 0
    assert ingest_path(open_store(again), course_dir, course_id="bio").added == added[0]


def test_every_sentence_gets_a_vector_and_a_store_made_without_them_gets_them_on_the_next_ingest(
    offline_settings, course_dir: Path, caplog: pytest.LogCaptureFixture
):
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    chunks = {chunk.id: chunk for chunk in store.chunk_texts("bio")}
    counts = {id: int(chunk.metadata["sentences"]) for id, chunk in chunks.items()}
    vectors = store.sentence_vectors({"bio": counts})
    calvin = next(id for id, chunk in chunks.items() if "Calvin cycle takes place" in chunk.text)
    assert set(vectors) == set(chunks) and vectors[calvin].shape == (2, 384)
    expected = store.embedder.embed(["It fixes carbon dioxide into sugar using ATP and NADPH."])[0]
    assert np.allclose(vectors[calvin][1], expected, atol=1e-4)

    # a store from before sentence vectors: none stored, and its chunks' metadata does not count them
    collection = store._collection("bio")
    collection.update(ids=list(chunks), metadatas=[{"sentences": None} for _ in chunks])
    store.client.delete_collection(store._sentences("bio").name)
    store._sentence_collections.clear()
    passages = Retriever(store).retrieve("Where does the Calvin cycle take place?", allowed_courses={"bio"})
    assert passages[0].chunk_id == calvin and len(passages[0].sentence_similarities) == 2
    assert "ingest their course again" in caplog.text, "until then they are embedded as they are asked for"

    again = ingest_path(store, course_dir, course_id="bio")
    assert (again.added, again.updated) == (0, len(chunks))
    assert store.sentence_vectors({"bio": counts}).keys() == chunks.keys()


def test_a_chunk_cut_into_other_sentences_before_gets_vectors_of_its_sentences_now_and_at_the_next_ingest(
    offline_settings, course_dir: Path, caplog: pytest.LogCaptureFixture
):
    """A version that cut text into sentences otherwise (one that ended a sentence at "ca." or "Dr.") stored a
    vector for each of its sentences: they are not this version's, so the retriever embeds the chunk's sentences as
    they are asked for, and the next ingest stores them."""
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    chunks = {chunk.id: chunk for chunk in store.chunk_texts("bio")}
    calvin = next(id for id, chunk in chunks.items() if "Calvin cycle takes place" in chunk.text)
    units = ["The Calvin cycle takes place in the stroma.", "It fixes carbon dioxide into sugar using ATP and NADPH."]
    older = ["The Calvin cycle", "takes place in the stroma.", units[1]]
    store._sentences("bio").upsert(ids=[f"{calvin}:{n}" for n in range(3)], embeddings=store.embedder.embed(older),
                                   metadatas=[{"chunk_id": calvin}] * 3)
    store._collection("bio").update(ids=[calvin], metadatas=[{**chunks[calvin].metadata, "sentences": 3}])

    passages = Retriever(store).retrieve("Where does the Calvin cycle take place?", allowed_courses={"bio"})
    assert passages[0].chunk_id == calvin and len(passages[0].sentence_similarities) == 2
    assert "vectors of other sentences" in caplog.text

    again = ingest_path(store, course_dir, course_id="bio")
    assert (again.added, again.updated) == (0, 1)
    stored = store.sentence_vectors({"bio": {calvin: 2}})[calvin]
    assert np.allclose(stored, store.embedder.embed(units), atol=1e-4)


def test_a_file_that_fails_is_reported_and_the_rest_goes_on(offline_settings, course_dir: Path):
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    (course_dir / "respiration.md").write_bytes(b"\xff\xfe not utf-8 \xff")
    (course_dir / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (course_dir / "volcanoes.md").write_text(VOLCANOES)

    report = ingest_path(store, course_dir, course_id="bio")

    failed = dict(report.failures)
    assert set(failed) == {str(course_dir / "respiration.md"), str(course_dir / "broken.pdf")}
    assert "UTF-8" in failed[str(course_dir / "respiration.md")]
    texts = [c.text for c in store.chunk_texts("bio")]
    assert any("tectonic plates" in t for t in texts)
    assert any("mitochondria" in t for t in texts), "a file that failed keeps what an earlier ingest stored"


def test_course_import_owns_its_lessons_and_leaves_other_material_alone(offline_settings, course_dir: Path):
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    lessons = [Lesson("l1", "Volcanoes", VOLCANOES), Lesson("l2", "Lava", "Lava cools into basalt.")]

    report = ingest_lessons("bio", lessons, settings=offline_settings)
    assert report.added == 2
    report = ingest_lessons("bio", lessons[:1], settings=offline_settings)

    lesson_ids = {c.metadata["lesson_id"] for c in store.chunk_texts("bio")}
    assert report.removed == 1
    assert lesson_ids == {"l1", "photosynthesis.md", "respiration.md"}


def add_course(data_dir: Path, slug: str) -> None:
    """A course row in the embedded database of DATA_DIR (what `lessonbot course import` leaves)."""
    from sqlalchemy.orm import Session

    from storage.courses import Course
    from storage.db import make_sync_engine
    from storage.migrate import upgrade

    url = f"sqlite:///{data_dir / 'lessonbot.db'}"
    upgrade(url)
    engine = make_sync_engine(url)
    with Session(engine) as session, session.begin():
        session.add(Course(slug=slug, title=slug.title(), description="", language="en", access="free",
                           content_hash=""))
    engine.dispose()


def test_ingest_command(offline_settings, data_dir: Path, course_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.chdir(data_dir.parent)
    add_course(data_dir, "bio")
    (course_dir / "slides.pptx").write_text("not a course format")  # skipped: not a course file
    (course_dir / "bad.md").write_bytes(b"\xff\xfe")

    status = main(["ingest", str(course_dir), "--course", "bio"])

    out, err = capsys.readouterr()
    assert status == 1
    assert "Course bio: 2 lessons, 4 chunks added" in out and "1 file failed" in out
    assert "bad.md" in err and "UTF-8" in err
    assert "Embedding bio" in err  # the progress bar
    assert main(["ingest", str(course_dir / "missing"), "--course", "bio"]) == 2


def test_front_matter_gives_the_title_and_is_not_course_text(tmp_path: Path):
    lesson_file = tmp_path / "02-check.md"
    lesson_file.write_text("---\nid: check\ntitle: Check who is writing\n---\n\n## Quiz\n\nThe name is a label.\n")
    plain_rule = tmp_path / "rules.md"
    plain_rule.write_text("---\nNot front matter, just a sentence between rules.\n---\n\nBody.\n")

    lesson = read_lesson(lesson_file)
    other = read_lesson(plain_rule)

    assert lesson.title == "Check who is writing" and "title:" not in lesson.text
    assert chunk_lesson("c", lesson)[0].heading_path == ("Quiz",)
    assert other.title == "rules" and "Not front matter" in other.text


def test_ingest_refuses_a_course_that_does_not_exist(data_dir: Path, course_dir: Path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.chdir(data_dir.parent)
    assert main(["ingest", str(course_dir), "--course", "nope"]) == 2
    assert capsys.readouterr().err.startswith("There is no course 'nope': there are no courses yet.")

    add_course(data_dir, "biology")
    assert main(["ingest", str(course_dir), "--course", "biolgy"]) == 2
    assert capsys.readouterr().err == ("There is no course 'biolgy': did you mean 'biology'? --course takes the id "
                                       "of an imported course: biology (lessonbot course list).\n")
    assert not (data_dir / "chroma").exists()  # nothing was written to the store


def test_the_summary_counts_in_english():
    from knowledge.ingest import IngestReport

    one = IngestReport("bio", lessons=1, added=1, failures=[("bad.md", "not UTF-8")])
    assert one.summary() == "Course bio: 1 lesson, 1 chunk added, 0 updated, 0 removed, 0 unchanged. 1 file failed."
    many = IngestReport("bio", lessons=2, added=1200)
    assert many.summary() == "Course bio: 2 lessons, 1,200 chunks added, 0 updated, 0 removed, 0 unchanged."


def test_every_paragraph_is_a_chunk_of_its_own_but_a_short_lead_in_goes_with_what_it_leads_into():
    long_paragraph = " ".join(f"Sentence {n} of the long paragraph says something about water." for n in range(40))
    text = "\n\n".join([
        "Stomata are pores in a leaf that let gases in and out, opening by day and closing at night. " * 2,
        "If you see wilting, act at once:",
        "1. Water the plant.\n2. Move it out of the sun.",
        "Xylem carries water up from the roots to the leaves, pulled by the water that leaves evaporate. " * 2,
        long_paragraph,
        "Phloem carries sugar from the leaves to the rest of the plant, down as well as up, all year round. " * 2,
        "```\nwater = 1\n\nsun = 2\n```",
    ])

    chunks = chunk_lesson("c", Lesson("l", "Plants", text, markdown=False))

    assert [c.text for c in chunks[:3]] == [p.strip() for p in text.split("\n\n")[:1]] + [
        "If you see wilting, act at once:\n\n1. Water the plant.\n2. Move it out of the sun.",
        text.split("\n\n")[3].strip(),
    ]
    pieces = [c.text for c in chunks[3:]]
    assert len(pieces) == 4 and all(len(p) <= 1000 for p in pieces), "a long paragraph: pieces of about even length"
    assert max(map(len, pieces[:3])) - min(map(len, pieces[:3])) < 200
    assert pieces[-1].startswith("Phloem") and pieces[-1].endswith("```\nwater = 1\n\nsun = 2\n```"), (
        "a short last paragraph joins the one before"
    )
    assert all(text[c.start : c.start + len(c.text)] == c.text for c in chunks)


def test_a_damaged_store_is_explained_and_opened_once_it_is_made_again(offline_settings, course_dir: Path):
    """A store whose database is not one (a partial restore, a disk filled mid-write) says so; moved aside, the
    same process opens the new one at that path (chromadb keeps a store that failed to start for its folder)."""
    folder = offline_settings.chroma_path
    folder.mkdir(parents=True)
    (folder / "chroma.sqlite3").write_bytes(b"not a database\n")
    with pytest.raises(StoreUnavailable, match="cannot be opened") as raised:
        open_store(offline_settings)
    assert str(folder) in str(raised.value)

    shutil.move(folder, folder.with_name("chroma-damaged"))
    assert ingest_path(open_store(offline_settings), course_dir, course_id="bio").added > 0
