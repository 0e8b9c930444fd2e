"""The same ingest and entitlement-filtered retrieval against a real Chroma server (CHROMA_HOST/CHROMA_PORT)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from knowledge.answerer import Answerer
from knowledge.ingest import ingest_lessons, ingest_path
from knowledge.sources import Lesson
from knowledge.store import StoreUnavailable, open_store
from tests.knowledge.conftest import VOLCANOES, free_port

pytestmark = pytest.mark.slow


async def test_a_chroma_server_holds_the_courses(offline_settings, course_dir, chroma_server):
    host, port = chroma_server
    settings = replace(offline_settings, chroma_host=host, chroma_port=port)
    store = open_store(settings)
    ingest_path(store, course_dir, course_id="bio")
    ingest_lessons("geo", [Lesson("v", "Volcanoes", VOLCANOES)], settings=settings)

    assert not offline_settings.chroma_path.exists(), "nothing went to the disk store"
    again = ingest_path(open_store(settings), course_dir, course_id="bio")
    assert again.added == 0 and again.unchanged > 0
    answerer = Answerer(settings, store=store)
    answer = await answerer.answer("Where does the Calvin cycle take place?", learner=1, allowed_courses={"bio"})
    hidden = await answerer.answer("What is magma called at the surface?", learner=1, allowed_courses={"bio"})

    assert "stroma" in answer.text and answer.sources[0].course_id == "bio"
    assert "lava" not in hidden.text.lower()


def test_an_unreachable_server_is_explained(offline_settings):
    settings = replace(offline_settings, chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreUnavailable, match="CHROMA_HOST"):
        open_store(settings)
