"""`lessonbot eval knowledge DIR`: how well the answerer does on a SQuAD-format set of questions.

DIR holds one SQuAD JSON file and its articles as text (`articles/<title>.txt`, or beside the JSON), like
../shared/datasets/squad-dev. The articles are ingested as one course into a scratch store, every question (or a
seeded sample) is asked, and the report gives, for answerable questions, recall@1/@5 and MRR@10 of the paragraph
holding the gold answer and the answer hit rate (the answer contains a gold answer text, SQuAD-normalised); for
unanswerable ones the decline rate; and the latency of retrieval plus answer (p50/p95).

A retrieved chunk stands for the paragraph it overlaps most, so a paragraph split over two chunks is found by
either, and a chunk that merges two short paragraphs counts only for the larger part.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.text import plain_words
from knowledge.retrieval import Mode

if TYPE_CHECKING:
    from knowledge.settings import KnowledgeSettings

COURSE = "eval"
RANK_DEPTH = 10


@dataclass(frozen=True)
class Question:
    text: str
    article: str  # lesson id: the article's file name
    paragraph: int
    answers: tuple[str, ...]
    answerable: bool


class DatasetError(Exception):
    """DIR is not a SQuAD-format set with its articles; the message says what is missing."""


def load(directory: Path) -> tuple[Path, list[Question], dict[str, list[tuple[int, int]]]]:
    """(articles folder, questions, article file → paragraph spans in the file's text)."""
    files = sorted(directory.glob("*.json"))
    if len(files) != 1:
        raise DatasetError(f"{directory} should hold exactly one SQuAD JSON file (found {len(files)})")
    articles = directory / "articles" if (directory / "articles").is_dir() else directory
    data = json.loads(files[0].read_text(encoding="utf-8"))["data"]
    questions: list[Question] = []
    spans: dict[str, list[tuple[int, int]]] = {}
    for article in data:
        name = f"{article['title']}.txt"
        path = articles / name
        if not path.is_file():
            raise DatasetError(f"the article {article['title']!r} has no text file {path}")
        text = path.read_text(encoding="utf-8")
        cursor, article_spans = 0, []
        for number, paragraph in enumerate(article["paragraphs"]):
            start = text.find(paragraph["context"], cursor)
            if start < 0:
                raise DatasetError(f"paragraph {number} of {article['title']!r} is not in {path}")
            article_spans.append((start, start + len(paragraph["context"])))
            cursor = start
            for qa in paragraph["qas"]:
                questions.append(
                    Question(
                        text=qa["question"],
                        article=name,
                        paragraph=number,
                        answers=tuple(a["text"] for a in qa.get("answers", [])),
                        answerable=not qa.get("is_impossible", False),
                    )
                )
        spans[name] = article_spans
    return articles, questions, spans


def normalise(text: str) -> str:
    """SQuAD's answer normalisation on the project's plain words (case, accents, punctuation, spacing): and no
    articles."""
    return " ".join(word for word in plain_words(text).split() if word not in ("a", "an", "the"))


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def evaluate(
    settings: KnowledgeSettings,
    directory: Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    mode: Mode = "hybrid",
    extractive_only: bool = False,
    store_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    articles, questions, spans = load(directory)
    if sample is not None and sample < len(questions):
        questions = random.Random(seed).sample(questions, sample)
    with tempfile.TemporaryDirectory(prefix="lessonbot-eval-") as scratch:
        # always an embedded store of its own: the evaluation never writes into the bot's courses
        eval_settings = replace(settings, chroma_host="", chroma_path=store_path or Path(scratch),
                                chroma_collection="eval")
        return asyncio.run(
            _run(eval_settings, articles, questions, spans, mode=mode, extractive_only=extractive_only,
                 progress=progress)
        )


async def _run(
    settings: KnowledgeSettings,
    articles: Path,
    questions: list[Question],
    spans: dict[str, list[tuple[int, int]]],
    *,
    mode: Mode,
    extractive_only: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    from knowledge.answerer import Answerer
    from knowledge.ingest import ingest_path
    from knowledge.store import open_store

    store = open_store(settings)
    started = time.perf_counter()
    report = await asyncio.to_thread(ingest_path, store, articles, course_id=COURSE)
    ingest_seconds = time.perf_counter() - started
    chunk_paragraph = {
        chunk.id: _paragraph_of(chunk.metadata, len(chunk.text), spans) for chunk in store.chunk_texts(COURSE)
    }
    answerer = Answerer(settings, store=store, mode=mode, extractive_only=extractive_only)
    allowed = {COURSE}

    ranks: list[int | None] = []
    hits = declined_answerable = declined_unanswerable = unanswerable = tokens = 0
    latencies: list[float] = []
    for done, question in enumerate(questions, start=1):
        started = time.perf_counter()
        passages = answerer.retriever.retrieve(question.text, allowed_courses=allowed, limit=RANK_DEPTH)
        answer = await answerer.compose(question.text, passages, learner="eval", allowed_courses=allowed)
        latencies.append((time.perf_counter() - started) * 1000)
        tokens += answer.tokens
        if question.answerable:
            paragraphs = list(dict.fromkeys(chunk_paragraph.get(p.chunk_id) for p in passages))
            target = (question.article, question.paragraph)
            ranks.append(paragraphs.index(target) + 1 if target in paragraphs else None)
            said = normalise(answer.text)
            hits += (not answer.declined) and any(normalise(a) and normalise(a) in said for a in question.answers)
            declined_answerable += answer.declined
        else:
            unanswerable += 1
            declined_unanswerable += answer.declined
        if progress:
            progress(done, len(questions))

    answerable = len(ranks)

    def share(count: float, total: int) -> float | None:
        return round(count / total, 3) if total else None

    return {
        "questions": len(questions),
        "answerable": answerable,
        "unanswerable": unanswerable,
        "retrieval": mode,
        "answers": "extractive" if answerer.model is None else f"model {answerer.model.model_name}",
        "recall_at_1": share(sum(1 for r in ranks if r == 1), answerable),
        "recall_at_5": share(sum(1 for r in ranks if r is not None and r <= 5), answerable),
        "mrr_at_10": share(sum(1 / r for r in ranks if r is not None), answerable),
        "answer_hit_rate": share(hits, answerable),
        "declined_answerable": share(declined_answerable, answerable),
        "decline_rate_unanswerable": share(declined_unanswerable, unanswerable),
        "latency_ms_p50": round(_percentile(latencies, 0.50), 1),
        "latency_ms_p95": round(_percentile(latencies, 0.95), 1),
        "model_tokens": tokens,
        "chunks": len(chunk_paragraph),
        "ingest_seconds": round(ingest_seconds, 1),
        "ingest": report.summary(),
    }


def _paragraph_of(
    metadata: dict[str, Any], length: int, spans: dict[str, list[tuple[int, int]]]
) -> tuple[str, int] | None:
    article = str(metadata.get("lesson_id"))
    start = int(metadata.get("start", -1))
    if article not in spans or start < 0:
        return None
    end = start + length
    overlaps = [min(end, b) - max(start, a) for a, b in spans[article]]
    best = max(range(len(overlaps)), key=overlaps.__getitem__)
    return (article, best) if overlaps[best] > 0 else None


def format_report(result: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    return "\n".join(
        [
            f"{result['questions']} questions ({result['answerable']} answerable, {result['unanswerable']} not); "
            f"retrieval: {result['retrieval']}; answers: {result['answers']}",
            f"  recall@1 {pct(result['recall_at_1'])}   recall@5 {pct(result['recall_at_5'])}   "
            f"MRR@10 {pct(result['mrr_at_10'])}",
            f"  answer hit rate {pct(result['answer_hit_rate'])} "
            f"(answerable; declined {pct(result['declined_answerable'])})",
            f"  decline rate {pct(result['decline_rate_unanswerable'])} (unanswerable)",
            f"  latency p50 {result['latency_ms_p50']} ms   p95 {result['latency_ms_p95']} ms",
            f"  {result['chunks']} chunks, ingested in {result['ingest_seconds']} s; "
            f"model tokens {result['model_tokens']}",
        ]
    )
