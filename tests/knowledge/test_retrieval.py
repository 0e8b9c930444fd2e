"""Retrieval: hybrid search over the learner's courses only, fresh after re-ingest, one embedding model per store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import openai as openai_errors
import pytest

from knowledge.answer import NoAnswer
from knowledge.answerer import Answerer
from knowledge.embeddings import MiniLMEmbedder
from knowledge.ingest import ingest_lessons, ingest_path
from knowledge.resident import ResidentCourses
from knowledge.retrieval import Retriever
from knowledge.sources import Lesson
from knowledge.store import EmbeddingModelMismatch, StoredChunk, open_store
from tests.knowledge.conftest import PHOTOSYNTHESIS, VOLCANOES


def test_minilm_vectors_do_not_depend_on_the_batch_they_were_padded_in(offline_settings):
    embedder = MiniLMEmbedder()
    short, long = "Plants need light.", PHOTOSYNTHESIS
    alone = np.array(embedder.embed([short]))
    batched = np.array(embedder.embed([long, short, "Lava cools into basalt."]))
    assert np.allclose(alone[0], batched[1], atol=1e-4)
    assert np.isclose(np.linalg.norm(batched[0]), 1.0, atol=1e-4)
    related, unrelated = embedder.embed(["Where does the Calvin cycle happen?", "How do volcanoes form?"])
    calvin = embedder.embed(["The Calvin cycle takes place in the stroma."])[0]
    assert np.dot(related, calvin) > np.dot(unrelated, calvin) + 0.2


def test_hybrid_search_finds_exact_words_and_paraphrases(offline_settings, course_dir: Path):
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    retriever = Retriever(store)

    exact = retriever.retrieve("What does NADPH do in the Calvin cycle?", allowed_courses={"bio"})
    paraphrase = retriever.retrieve("Which part of the cell turns sugar into usable energy?", allowed_courses={"bio"})

    assert "Calvin cycle" in exact[0].text
    assert exact[0].where == "Photosynthesis › Calvin cycle"
    assert "mitochondria" in paraphrase[0].text


async def test_a_learner_never_gets_material_from_a_course_they_are_not_entitled_to(offline_settings, course_dir):
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES)], settings=offline_settings)
    retriever = Retriever(store)
    question = "What is magma called when it reaches the surface?"

    for mode in ("hybrid", "dense", "keyword"):
        retriever.mode = mode
        found = retriever.retrieve(question, allowed_courses={"bio"})
        assert all(p.course_id == "bio" for p in found) and (found or mode == "keyword")
        assert retriever.retrieve(question, allowed_courses={"geo"})[0].course_id == "geo"
    answerer = Answerer(offline_settings, store=store)
    bio_only = await answerer.answer(question, learner=1, allowed_courses={"bio"})
    both = await answerer.answer(question, learner=1, allowed_courses={"bio", "geo"})
    nothing = await answerer.answer(question, learner=1, allowed_courses=set())

    assert "lava" not in bio_only.text.lower() and {s.course_id for s in bio_only.sources} <= {"bio"}
    assert "lava" in both.text.lower() and both.sources[0].course_id == "geo"
    assert nothing.unanswered is NoAnswer.NO_COURSES and nothing.declined and not nothing.text
    assert retriever.retrieve(question, allowed_courses={"no-such-course"}) == []


def test_the_keyword_index_follows_a_reingest_made_elsewhere(offline_settings, course_dir: Path):
    retriever = Retriever(open_store(offline_settings))
    ingest_path(retriever.store, course_dir, course_id="bio")
    assert retriever.retrieve("Rubisco enzyme", allowed_courses={"bio"}, limit=1)[0].keyword_score == 0

    # another process (its own store handle) edits the course
    (course_dir / "respiration.md").write_text("# Rubisco\n\nRubisco is the enzyme that fixes carbon dioxide.")
    ingest_path(open_store(offline_settings), course_dir, course_id="bio")

    best = retriever.retrieve("Rubisco enzyme", allowed_courses={"bio"}, limit=1)[0]
    assert "Rubisco is the enzyme" in best.text and best.keyword_score == 1.0


def test_a_reimport_by_another_process_is_answered_from_by_a_process_that_had_the_store_open(
    offline_settings, course_dir: Path
):
    """The bot runs while an author imports an edited course (`lessonbot course import`, a process of its own, on the
    store on disk): embedded Chroma in the bot's process knew the course's vectors as they were, and every read of
    them failed ("Error finding id") until the bot was restarted; the store is opened afresh and read again."""
    answerer = Answerer(offline_settings)
    ingest_path(answerer.store, course_dir, course_id="bio")
    assert "stroma" in asyncio.run(answerer.answer("Where does the Calvin cycle take place?", learner=1,
                                                   allowed_courses={"bio"})).text

    def ingest_elsewhere() -> None:
        subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; from bot.config import knowledge_settings, "
             "load_settings; from knowledge.ingest import ingest_path; from knowledge.store import open_store; "
             "ingest_path(open_store(knowledge_settings(load_settings(_env_file=None, data_dir=Path(sys.argv[1])))), "
             "Path(sys.argv[2]), course_id='bio')", str(offline_settings.chroma_path.parent), str(course_dir)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            check=True, capture_output=True, timeout=300,
        )

    def answer(question: str) -> str:
        return asyncio.run(answerer.answer(question, learner=1, allowed_courses={"bio"})).text

    (course_dir / "respiration.md").write_text("# Rubisco\n\nRubisco is the enzyme that fixes carbon dioxide.")
    ingest_elsewhere()
    assert "Rubisco is the enzyme" in answer("Which enzyme fixes carbon dioxide?")
    assert "stroma" in answer("Where does the Calvin cycle take place?")

    # edited again: a sentence added to a paragraph the process has read
    photosynthesis = course_dir / "photosynthesis.md"
    photosynthesis.write_text(photosynthesis.read_text().replace(
        "It fixes carbon dioxide", "A zorblat is the sugar the Calvin cycle makes first. It fixes carbon dioxide"))
    ingest_elsewhere()
    assert "A zorblat is the sugar" in answer("What is a zorblat?")


def test_a_store_built_with_another_embedding_model_is_refused_with_an_explanation(offline_settings, openai):
    open_store(offline_settings)
    other = replace(offline_settings, embeddings="openai", openai_base_url=openai.base_url, openai_embedding_model="e5")
    with pytest.raises(EmbeddingModelMismatch) as refused:
        open_store(other)
    assert "all-MiniLM-L6-v2-int8" in str(refused.value) and "openai:e5" in str(refused.value)
    assert "CHROMA_COLLECTION" in str(refused.value)

    # with a collection of its own, the endpoint's embeddings work end to end
    own = replace(other, chroma_collection="with_e5")
    store = open_store(own)
    ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES)], settings=own)
    assert Retriever(store, mode="dense").retrieve("volcanoes tectonic plates", allowed_courses={"geo"})
    assert openai.embedding_requests >= 2


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_a_search_hands_on_the_term_weights_of_the_revision_it_searched(offline_settings, course_dir: Path, mode):
    """The extractive answer weighs the question's words with these, instead of reading the courses again."""
    retriever = Retriever(open_store(offline_settings), mode=mode)
    ingest_path(retriever.store, course_dir, course_id="bio")
    found = retriever.search("Which enzyme fixes carbon dioxide?", allowed_courses={"bio"})
    weights = retriever.rarity({"bio"})
    assert found.passages and [found.rarity(term) for term in ("enzym", "calvin", "rubisco", "the")] == [
        weights(term) for term in ("enzym", "calvin", "rubisco", "the")]
    assert found.rarity("rubisco") > found.rarity("calvin")  # absent from the course: the rarest of all

    (course_dir / "respiration.md").write_text("# Rubisco\n\nRubisco is the enzyme that fixes carbon dioxide.")
    ingest_path(open_store(offline_settings), course_dir, course_id="bio")
    again = retriever.search("Which enzyme fixes carbon dioxide?", allowed_courses={"bio"})
    assert again.rarity("rubisco") < found.rarity("rubisco")  # the new revision's statistics
    assert retriever.search("lava", allowed_courses={"no-such-course"}).passages == []


def test_the_dense_side_follows_a_reingest_made_elsewhere(offline_settings, course_dir: Path):
    retriever = Retriever(open_store(offline_settings), mode="dense")
    ingest_path(retriever.store, course_dir, course_id="bio")
    assert retriever.resident.kept("bio", retriever.store.revisions(["bio"])["bio"]) is None  # nothing read yet
    before = retriever.retrieve("Which enzyme fixes carbon dioxide?", allowed_courses={"bio"}, limit=1)[0]
    assert "Rubisco" not in before.text

    (course_dir / "respiration.md").write_text("# Rubisco\n\nRubisco is the enzyme that fixes carbon dioxide.")
    ingest_path(open_store(offline_settings), course_dir, course_id="bio")

    after = retriever.retrieve("Which enzyme fixes carbon dioxide?", allowed_courses={"bio"}, limit=1)[0]
    assert "Rubisco is the enzyme" in after.text
    assert retriever.resident.kept("bio", retriever.store.revisions(["bio"])["bio"]) is not None


ANIMALS = ["otters", "falcons", "beavers", "herons", "lynxes", "salmon", "badgers", "owls", "newts", "moose", "voles"]
PLACES = ["river deltas", "pine forests", "salt marshes", "alpine meadows", "coral reefs", "city parks", "tundra"]
FOODS = ["crayfish", "beetles", "acorns", "minnows", "berries", "lichen", "snails", "seeds", "frogs"]


def field_guide(count: int) -> list[Lesson]:
    """`count` one-paragraph lessons (a chunk each) on animals, places and food in different mixes."""
    lessons = []
    for n in range(count):
        animal, place, food = ANIMALS[n % 11], PLACES[n * 3 % 7], FOODS[n * 5 % 9]
        text = (f"{animal.capitalize()} of the {place} mostly eat {food}, which they find at dawn. "
                f"A grown one travels {n + 2} kilometres a day and rests in {PLACES[(n + 1) % 7]} in winter. "
                f"Rangers count them every {['spring', 'summer', 'autumn'][n % 3]} from field station {n}.")
        lessons.append(Lesson(f"l{n}", f"{animal.capitalize()} in the {place}", text))
    return lessons


QUESTIONS = ["What do otters eat?", "Where do falcons rest in winter?", "Which animals eat crayfish at dawn?",
             "How far does a grown moose travel?", "When do rangers count the herons of the salt marshes?",
             "field station 17", "Which animal lives in the coral reefs?"]


@pytest.mark.parametrize("embeddings", ["offline", "endpoint without unit vectors"])
def test_courses_kept_in_the_process_rank_as_the_store_does(offline_settings, openai, embeddings: str):
    settings = offline_settings
    if embeddings != "offline":  # an OpenAI-compatible endpoint whose vectors are word counts, not of unit length
        openai.unit_embeddings = False
        settings = replace(offline_settings, embeddings="openai", openai_base_url=openai.base_url,
                           openai_embedding_model="counts", chroma_collection="counts")
    ingest_lessons("zoo", field_guide(60), settings=settings)  # more chunks than either side's 30 candidates
    ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES)], settings=settings)
    store = open_store(settings)
    kept, searched = Retriever(store), Retriever(store)
    searched.resident.budget = 0  # every course larger than what the process keeps: searched in the store

    for mode in ("hybrid", "dense"):
        kept.mode = searched.mode = mode
        for question in QUESTIONS:
            ours = kept.retrieve(question, allowed_courses={"zoo", "geo"}, limit=20)
            theirs = searched.retrieve(question, allowed_courses={"zoo", "geo"}, limit=20)
            if embeddings == "offline":
                assert [p.chunk_id for p in ours] == [p.chunk_id for p in theirs]
                assert [p.text for p in ours] == [p.text for p in theirs]
            # word counts tie often, and ties may come in either order: each passage both found is scored alike
            theirs_by_id = {p.chunk_id: p for p in theirs}
            both = [p for p in ours if p.chunk_id in theirs_by_id]
            assert len(both) >= len(ours) - 3 and ours
            # cosines, whatever the length of the endpoint's vectors
            assert all(-1.0001 <= c <= 1.0001 for p in ours for c in (p.similarity, *p.sentence_similarities))
            for p in both:
                assert np.isclose(p.similarity, theirs_by_id[p.chunk_id].similarity, atol=1e-4)
                assert np.isclose(p.score, theirs_by_id[p.chunk_id].score, atol=1e-4)
                assert p.text == theirs_by_id[p.chunk_id].text
    revisions = store.revisions(["zoo", "geo"])
    assert kept.resident.kept("zoo", revisions["zoo"]) and kept.resident.kept("geo", revisions["geo"])
    assert not searched.resident.kept("zoo", revisions["zoo"])


def test_an_ingest_stopped_half_way_leaves_no_removed_chunk_in_a_process(offline_settings, openai):
    """Chunks are removed before the new ones are embedded; an ingest that fails in between still gives the course
    a new revision, so a process that keeps the course in memory reads it again instead of quoting the removed."""
    settings = replace(offline_settings, embeddings="openai", openai_base_url=openai.base_url,
                       openai_embedding_model="e5", chroma_collection="with_e5")
    ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES)], settings=settings)
    retriever = Retriever(open_store(settings))
    assert "lava" in retriever.retrieve("magma lava surface", allowed_courses={"geo"}, limit=1)[0].text.lower()

    glaciers = Lesson("g", "Glaciers", "Glaciers carve valleys into U shapes.")
    openai.fail_embeddings = True  # the endpoint fails while the new lesson is embedded
    revision = retriever.store.revisions(["geo"])["geo"]
    with pytest.raises(openai_errors.BadRequestError):  # nothing written yet: the course stays as it was
        ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES), glaciers], settings=settings)
    assert retriever.store.revisions(["geo"])["geo"] == revision
    with pytest.raises(openai_errors.BadRequestError):  # the volcanoes removed, then the failure
        ingest_lessons("geo", [glaciers], settings=settings)
    assert retriever.store.revisions(["geo"])["geo"] != revision
    openai.fail_embeddings = False

    assert all("lava" not in p.text.lower()
               for p in retriever.retrieve("magma lava surface", allowed_courses={"geo"}, limit=5))


def test_a_removed_lesson_is_gone_from_another_process_while_the_reimport_embeds(offline_settings, openai):
    """A re-import removes a lesson and edits another: while the edit is being embedded (a slow endpoint; minutes
    for a large course), a process that keeps the course in memory no longer finds the removed lesson."""
    settings = replace(offline_settings, embeddings="openai", openai_base_url=openai.base_url,
                       openai_embedding_model="e5", chroma_collection="with_e5")
    recall = Lesson("r", "Recall notice", "The Zorblax 3000 heater was recalled because its fuse overheats.")
    ingest_lessons("geo", [recall, Lesson("v", "Volcanoes", VOLCANOES)], settings=settings)
    other_process = Retriever(open_store(settings))
    assert "fuse" in other_process.retrieve("Zorblax heater recalled", allowed_courses={"geo"}, limit=1)[0].text

    openai.hold_embeddings = threading.Event()
    edited = Lesson("v", "Volcanoes", VOLCANOES + "\n\nA caldera forms when a volcano collapses.")
    reimport = threading.Thread(target=ingest_lessons, args=("geo", [edited]), kwargs={"settings": settings})
    reimport.start()
    try:
        assert openai.embedding_waits.wait(30)
        during = other_process.retrieve("Zorblax heater recalled", allowed_courses={"geo"}, limit=5)
    finally:
        openai.hold_embeddings.set()
        reimport.join(30)
    assert all("Zorblax" not in passage.text for passage in during)
    assert any("caldera" in p.text for p in other_process.retrieve("caldera", allowed_courses={"geo"}, limit=5))


def test_the_process_keeps_only_as_many_chunks_as_its_budget(offline_settings, course_dir: Path):
    store = open_store(offline_settings)
    ingest_path(store, course_dir, course_id="bio")
    ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES)], settings=offline_settings)
    sizes, revisions = store.sizes(["bio", "geo"]), store.revisions(["bio", "geo"])
    retriever = Retriever(store)
    retriever.resident.budget = max(sizes.values())  # room for one course, the first asked about

    assert retriever.retrieve("lava", allowed_courses={"geo"})[0].course_id == "geo"
    assert "Calvin" in retriever.retrieve("Calvin cycle", allowed_courses={"bio"})[0].text  # from the store
    both = retriever.retrieve("What is magma called when it reaches the surface?", allowed_courses={"bio", "geo"})

    assert both[0].course_id == "geo"
    # what is kept is not let go for another course: no two courses take turns being read
    assert retriever.resident.kept("geo", revisions["geo"]) and not retriever.resident.kept("bio", revisions["bio"])


def test_a_course_that_cannot_be_read_whole_is_searched_in_the_store_without_asking_again_at_once():
    reads: list[str] = []

    def unreachable(course_id: str) -> tuple[list, np.ndarray]:
        reads.append(course_id)
        raise TimeoutError("the Chroma server did not answer")

    courses = ResidentCourses(unreachable)
    assert courses.for_courses({"geo": "r1"}, {"geo": 10}) == {}
    assert courses.for_courses({"geo": "r1"}, {"geo": 10}) == {}
    assert reads == ["geo"]  # not every question waits for a read that just failed
    assert courses.for_courses({"geo": "r2"}, {"geo": 10}) == {}  # a new revision is tried
    assert reads == ["geo", "geo"]


def test_a_copy_read_after_the_revision_was_seen_is_not_read_again_for_an_older_revision():
    """Around another process's ingest a question may have read the course's older revision while a newer copy was
    being read: that copy holds at least what the older revision did, and the course is not read again."""
    reads: list[str] = []

    def load(course_id: str) -> tuple[list[StoredChunk], np.ndarray]:
        reads.append(course_id)
        return [StoredChunk("a", "Lava is molten rock.", {"course_id": course_id})], np.ones((1, 4), np.float32)

    courses = ResidentCourses(load)
    seen_r1 = time.monotonic()  # a question saw r1 …
    newer = courses.for_courses({"geo": "r2"}, {"geo": 1}, seen_at=time.monotonic())["geo"]  # … another, r2
    assert courses.for_courses({"geo": "r1"}, {"geo": 1}, seen_at=seen_r1)["geo"] is newer
    assert reads == ["geo"]

    # a copy read before a question saw its revision may hold less than it: read again
    assert courses.for_courses({"geo": "r3"}, {"geo": 1}, seen_at=time.monotonic())["geo"].revision == "r3"
    assert reads == ["geo", "geo"]


APRENDER = """# Repasar para no olvidar

Quien repasa una lección al día siguiente de aprenderla la recuerda semanas después. Los repasos espaciados fijan
lo aprendido mejor que leer muchas veces seguidas.
"""

TOMAR_NOTAS = """# Tomar notas

Las notas que escribes con tus propias palabras te obligan a entender la idea antes de copiarla. Si no sabes
resumir un párrafo en una frase, todavía no lo has entendido y conviene que lo leas con calma otra vez.
"""


def test_a_spanish_course_is_searched_in_spanish(offline_settings):
    """A Spanish question finds its passage by the words' stems in Spanish ("repasando", "repasa"; "aprendiendo",
    "aprenderla"), with Spanish function words ("que", "lo", "la", "si", "no") left out; stemmed and filtered as
    English, the question matched the notes lesson on those instead."""
    store = open_store(offline_settings)
    ingest_lessons("estudiar", [Lesson("repasar", "Repasar", APRENDER), Lesson("notas", "Notas", TOMAR_NOTAS)],
                   settings=offline_settings, language="es")
    retriever = Retriever(store, mode="keyword")
    question = "¿Qué pasa con lo que estoy aprendiendo si no lo sigo repasando?"

    found = retriever.retrieve(question, allowed_courses={"estudiar"})
    assert found[0].lesson_id == "repasar", [(p.lesson_id, p.keyword_score) for p in found]
    assert len(found) == 1  # the notes lesson shares only function words with it
    answer = asyncio.run(Answerer(offline_settings, store=store).answer(
        "¿Cuándo conviene repasar lo que estoy aprendiendo?", learner=1, allowed_courses={"estudiar"}))
    assert "Quien repasa una lección" in answer.text and answer.sources[0].lesson_id == "repasar"

    # a re-import that gives a language the store has not recorded (a course first imported before) indexes it again
    ingest_lessons("study", [Lesson("repasar", "Repasar", APRENDER), Lesson("notas", "Notas", TOMAR_NOTAS)],
                   settings=offline_settings)
    assert retriever.retrieve(question, allowed_courses={"study"})[0].lesson_id == "notas"
    ingest_lessons("study", [Lesson("repasar", "Repasar", APRENDER), Lesson("notas", "Notas", TOMAR_NOTAS)],
                   settings=offline_settings, language="es-419")
    assert [p.lesson_id for p in retriever.retrieve(question, allowed_courses={"study"})] == ["repasar"]


def test_a_store_made_anew_by_another_process_is_read_by_a_process_that_had_the_old_one_open(
    offline_settings, course_dir: Path
):
    """The store on disk could not be opened, so its folder was moved aside and the courses imported again (what
    `StoreUnavailable` says to do), by `lessonbot course import` while the bot ran: the bot went on reading the old
    folder through the files it had open, and answered from the course as it was before."""
    answerer = Answerer(offline_settings)
    ingest_path(answerer.store, course_dir, course_id="bio")
    assert "stroma" in asyncio.run(answerer.answer("Where does the Calvin cycle take place?", learner=1,
                                                   allowed_courses={"bio"})).text

    (course_dir / "respiration.md").write_text("# Rubisco\n\nRubisco is the enzyme that fixes carbon dioxide.")
    store = offline_settings.chroma_path
    subprocess.run(
        [sys.executable, "-c", "import shutil, sys; from pathlib import Path; from bot.config import "
         "knowledge_settings, load_settings; from knowledge.ingest import ingest_path; from knowledge.store import "
         "open_store; shutil.move(sys.argv[3], sys.argv[3] + '.aside'); "
         "ingest_path(open_store(knowledge_settings(load_settings(_env_file=None, data_dir=Path(sys.argv[1])))), "
         "Path(sys.argv[2]), course_id='bio')", str(store.parent), str(course_dir), str(store)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=True, capture_output=True, timeout=300,
    )
    answer = asyncio.run(answerer.answer("Which enzyme fixes carbon dioxide?", learner=1, allowed_courses={"bio"}))
    assert "Rubisco is the enzyme" in answer.text, answer.text
