"""`lessonbot course import` when the question answerer's index cannot be brought up to date: one line saying why
and what to do, no traceback, a non-zero exit; nothing imported when the store cannot even be opened, and said so when
the course went in but its indexing failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from knowledge.embeddings import default_tokenizer_dir
from knowledge.store import StoreUnavailable
from storage.courses import Course
from storage.db import make_sync_engine
from tests.conftest import missing

SAMPLE = Path(__file__).resolve().parents[2] / "courses" / "sample"


@pytest.fixture
def here(tmp_path, monkeypatch, database_url):
    """A clean working folder (no .env), the test database, the knowledge store on disk in DATA_DIR."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    for variable in ("CHROMA_HOST", "CHROMA_PORT", "EMBEDDINGS", "KNOWLEDGE_TOKENIZER_DIR"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def _course_slugs(url: str) -> list[str]:
    engine = make_sync_engine(url)
    with engine.connect() as connection:
        slugs = list(connection.scalars(select(Course.slug)))
    engine.dispose()
    return slugs


def test_a_chroma_server_out_of_reach_imports_nothing_and_says_why(here, database_url):
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "course", "import", str(SAMPLE)],
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(here / "var"), "DATABASE_URL": database_url,
             "CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": "9"},
        capture_output=True, text=True, cwd=here, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Nothing was imported: the course cannot be indexed for questions. Cannot reach the "
                           "Chroma server at 127.0.0.1:9")
    assert line.endswith("Start it (`chroma run --path DIR --port PORT`) or unset CHROMA_HOST to use the store on "
                         "disk.")
    assert result.stdout == ""
    assert _course_slugs(database_url) == []  # nothing half-written


def test_indexing_that_fails_after_the_import_says_so_and_how_to_index_again(here, database_url, monkeypatch, capsys):
    if not (default_tokenizer_dir() / "tokenizer.json").is_file():
        missing("the offline embedding model is not installed (make install)")

    def unreachable(course, settings):
        raise StoreUnavailable("Cannot reach the Chroma server at chroma:8000 (timed out). Start it (`chroma run "
                               "--path DIR --port PORT`) or unset CHROMA_HOST to use the store on disk.")

    monkeypatch.setattr("authoring.indexing.ingest_course", unreachable)
    assert main(["course", "import", str(SAMPLE)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "Imported new course spot-phishing: 2 modules, 5 lessons, 14 questions."
    assert err.splitlines() == [
        "Question answering: not updated: Cannot reach the Chroma server at chroma:8000 (timed out). Start it (`chroma "
        "run --path DIR --port PORT`) or unset CHROMA_HOST to use the store on disk. The course itself was imported "
        f"(learners can take its lessons); once that is fixed, run `lessonbot course import {SAMPLE}` again to index "
        "it (learners keep their progress).",
    ]
    assert _course_slugs(database_url) == ["spot-phishing"]

    monkeypatch.undo()  # fixed: the same command indexes the course
    monkeypatch.chdir(here)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(here / "var"))
    assert main(["course", "import", str(SAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("Question answering: Course spot-phishing: 5 lessons, ")


def test_an_unexpected_failure_of_indexing_is_named_by_its_type_in_one_line(here, monkeypatch, capsys):
    if not (default_tokenizer_dir() / "tokenizer.json").is_file():
        missing("the offline embedding model is not installed (make install)")

    def broken(course, settings):
        raise RuntimeError("HNSW index is corrupt\nmore detail on a second line")

    monkeypatch.setattr("authoring.indexing.ingest_course", broken)
    assert main(["course", "import", str(SAMPLE)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("Question answering: not updated: RuntimeError: HNSW index is corrupt. The course itself "
                           "was imported")


def test_a_damaged_store_on_disk_imports_nothing_and_says_which_folder_and_what_to_do(here, database_url):
    if not (default_tokenizer_dir() / "tokenizer.json").is_file():
        missing("the offline embedding model is not installed (make install)")
    store = here / "var" / "chroma"
    store.mkdir(parents=True)
    (store / "chroma.sqlite3").write_bytes(b"not a database\n")  # a disk filled mid-write, a partial restore
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "course", "import", str(SAMPLE)],
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(here / "var"), "DATABASE_URL": database_url,
             "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True, text=True, cwd=here, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Nothing was imported: the course cannot be indexed for questions. The knowledge store "
                           f"in {store} cannot be opened (")
    assert line.endswith("It holds only what was imported into it: move that folder aside, then run `lessonbot "
                         "course import` for each course again (and `lessonbot ingest` for material added that way).")
    assert _course_slugs(database_url) == []
