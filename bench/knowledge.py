"""`lessonbot bench knowledge`: ingest throughput and query latency of the embedded Chroma store at given sizes.

Chunks are made from the dataset's articles: runs of 3–8 consecutive sentences, then runs with one inner sentence
left out (squad-dev gives about 110,000 such chunks, 92 % of the first 100,000 distinct), so they read like course
text and size like real chunks. Each size gets a fresh collection holding one course (the worst case
for per-course keyword search). Ingest throughput counts embedding and storing; query latency is the full
hybrid retrieval (question embedding, the nearest vectors, BM25, fusion, re-ranking) once the course is read into
the process (its keyword index, and its chunks and vectors where they fit in `knowledge.resident.RESIDENT_CHUNKS`),
whose time is reported apart. Beside it, the same queries with the course searched in the store (Chroma's vector
index and reads by id), as a course larger than the process keeps is.

Embedding dominates ingest (about 20–30 chunks a second on 2 cores). `--embedded N` embeds only the first N
distinct chunks and gives later ones the vector of an earlier chunk, slightly jittered: the store and index then
hold the full size at a fraction of the time, and the report says how many vectors were real.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.chunking import Chunk, chunk_id
from knowledge.embeddings import TextEmbedder, make_embedder
from knowledge.terms import sentences

if TYPE_CHECKING:
    from knowledge.settings import KnowledgeSettings

COURSE = "bench"


class ReusingEmbedder:
    """Embeds the first `limit` distinct texts; after that, reuses those vectors (jittered) in turn."""

    def __init__(self, embedder: TextEmbedder, limit: int | None) -> None:
        self.embedder = embedder
        self.model_id = embedder.model_id
        self.limit = limit
        self.known: dict[str, list[float]] = {}
        self.real: list[list[float]] = []
        self.rng = np.random.default_rng(0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        fresh = [t for t in dict.fromkeys(texts) if t not in self.known]
        if self.limit is not None:
            fresh = fresh[: max(0, self.limit - len(self.real))]
        for text, vector in zip(fresh, self.embedder.embed(fresh), strict=True):
            self.known[text] = vector
            self.real.append(vector)
        return [self.known.get(text) or self._reused(i) for i, text in enumerate(texts)]

    def _reused(self, i: int) -> list[float]:
        base = np.asarray(self.real[(len(self.known) + i) % len(self.real)])
        vector = base + self.rng.normal(0, 0.01, base.shape)
        return (vector / np.linalg.norm(vector)).tolist()


def synthetic_chunks(dataset: Path, count: int, *, seed: int = 0) -> list[Chunk]:
    """`count` chunks: windows of 3–8 consecutive sentences of an article (about 25,000 from squad-dev), then the
    windows of 4–8 with one inner sentence left out (about 85,000 more), all distinct while they last, then the same
    again under new ids. The first chunks of a larger count are the chunks of a smaller one (same seed)."""
    articles = dataset / "articles" if (dataset / "articles").is_dir() else dataset
    said = {path.name: sentences(path.read_text(encoding="utf-8")) for path in sorted(articles.glob("*.txt"))}
    windows = [(name, start, size, -1) for name, lines in said.items() for size in range(3, 9)
               for start in range(0, max(1, len(lines) - size + 1))]
    gapped = [(name, start, size, skip) for name, lines in said.items() for size in range(4, 9)
              for start in range(0, max(0, len(lines) - size + 1)) for skip in range(1, size - 1)]
    shuffle = random.Random(seed).shuffle
    shuffle(windows)
    shuffle(gapped)
    windows += gapped
    chunks = []
    for position in range(count):
        lesson, start, size, skip = windows[position % len(windows)]
        picked = said[lesson][start : start + size]
        text = " ".join(picked[:skip] + picked[skip + 1 :] if skip >= 0 else picked)
        title = lesson.removesuffix(".txt").replace("_", " ")
        chunks.append(
            Chunk(
                id=chunk_id(COURSE, lesson, f"{title}\n\n{text}", position),
                course_id=COURSE, lesson_id=lesson, lesson_title=title, source=lesson, heading_path=(),
                position=position, start=-1, text=text, origin="bench",
            )
        )
    return chunks


def questions(dataset: Path, count: int, *, seed: int = 0) -> list[str]:
    found = sorted(dataset.glob("*.json"))
    if found:
        data = json.loads(found[0].read_text(encoding="utf-8"))["data"]
        asked = [qa["question"] for article in data for p in article["paragraphs"] for qa in p["qas"]]
    else:
        asked = [chunk.text.split(". ")[0] for chunk in synthetic_chunks(dataset, count, seed=seed + 1)]
    return random.Random(seed).sample(asked, min(count, len(asked)))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def run(
    settings: KnowledgeSettings,
    dataset: Path,
    *,
    sizes: Sequence[int],
    queries: int,
    embedded: int | None,
    store_path: Path | None,
    log: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    from knowledge.retrieval import Retriever
    from knowledge.store import KnowledgeStore, open_client

    say = log or (lambda line: None)
    embedder = ReusingEmbedder(make_embedder(settings), embedded)
    asked = questions(dataset, queries)
    results = []
    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-") as scratch:
        # benchmarks embedded Chroma
        client = open_client(replace(settings, chroma_host="", chroma_path=store_path or Path(scratch)))
        for size in sizes:
            name = f"lessonbot_bench_{size}"
            KnowledgeStore(client, name=name, embedder=embedder).drop()
            store = KnowledgeStore(client, name=name, embedder=embedder)
            chunks = synthetic_chunks(dataset, size)
            say(f"{size} chunks: embedding and storing …")
            started = time.perf_counter()
            store.add(chunks, on_progress=None)
            store.mark_changed(COURSE)
            ingest_seconds = time.perf_counter() - started

            retriever, searched = Retriever(store), Retriever(store)
            searched.resident.budget = 0  # nothing kept in the process: every query searches the store
            started = time.perf_counter()
            retriever.retrieve(asked[0], allowed_courses={COURSE})
            first_query = time.perf_counter() - started  # reads the course: its keyword index, and what is kept
            searched.retrieve(asked[0], allowed_courses={COURSE})
            kept = retriever.resident.kept(COURSE, store.revisions([COURSE])[COURSE]) is not None
            latencies: list[float] = []
            store_latencies: list[float] = []
            for question in asked:  # the two in turn, so that both meet the same moments of the machine
                for each, into in ((retriever, latencies), (searched, store_latencies)):
                    started = time.perf_counter()
                    each.retrieve(question, allowed_courses={COURSE})
                    into.append((time.perf_counter() - started) * 1000)
            result = {
                "chunks": size,
                "vectors_embedded": min(size, len(embedder.real)),
                "ingest_seconds": round(ingest_seconds, 1),
                "ingest_chunks_per_second": round(size / ingest_seconds, 1),
                "first_query_seconds": round(first_query, 2),
                "kept_in_process": kept,
                "queries": len(latencies),
                "query_ms_p50": round(_percentile(latencies, 0.50), 1),
                "query_ms_p99": round(_percentile(latencies, 0.99), 1),
                "store_query_ms_p50": round(_percentile(store_latencies, 0.50), 1),
                "store_query_ms_p99": round(_percentile(store_latencies, 0.99), 1),
            }
            say(format_results([result]))
            results.append(result)
    return results


def format_results(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        lines.append(
            f"{r['chunks']:>7} chunks ({r['vectors_embedded']} embedded): ingest {r['ingest_chunks_per_second']} "
            f"chunks/s ({r['ingest_seconds']} s); first query {r['first_query_seconds']} s (reads the course"
            f"{', kept in the process' if r['kept_in_process'] else ', too large to keep in the process'}); "
            f"query p50 {r['query_ms_p50']} ms, p99 {r['query_ms_p99']} ms, searched in the store "
            f"p50 {r['store_query_ms_p50']} ms, p99 {r['store_query_ms_p99']} ms ({r['queries']} queries)"
        )
    return "\n".join(lines)
