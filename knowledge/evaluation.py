"""`lessonbot eval knowledge DIR`: how well the answerer does on a SQuAD-format set of questions.

DIR holds one SQuAD JSON file and its articles as text (`articles/<title>.txt`, or beside the JSON), like
bench/datasets/squad-dev. The articles are ingested as one course into a scratch store, every question (or a
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

import numpy as np

from bot.text import plain_words
from knowledge import extractive, ranking
from knowledge.answer import FROM, FROM_YOUR_COURSE
from knowledge.retrieval import Mode, Passage

if TYPE_CHECKING:
    from knowledge.answerer import Answerer
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


@dataclass
class Record:
    """How one question went."""

    question: Question
    rank: int | None = None  # of the gold paragraph among the retrieved (answerable questions)
    declined: bool = False
    hit: bool = False  # the answer holds a gold answer text
    chars: int = 0  # of what the answer says (quotes or the model's words; no labels or sources)
    cited_right: bool | None = None  # an answer: it draws on the gold paragraph
    confidence: float = 0.0  # the extractive quote's answerability (whether or not it was declined)
    quote_hits: bool = False  # the extractive quote holds a gold answer, declined or not
    quotable: bool = False  # there was a quote sharing words with the question
    settled: bool = False  # a short question the quote answers whatever the threshold
    latency_ms: float = 0.0
    tokens: int = 0


def evaluate(
    settings: KnowledgeSettings,
    directory: Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    mode: Mode = "hybrid",
    extractive_only: bool = False,
    store_path: Path | None = None,
    fit_to: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Ask the set's questions and report. `fit_to`: first fit the ranking models (knowledge/ranking.py) on half of
    the articles and write them there (knowledge/ranking.json is what the bot uses); the other half is reported apart
    (`held_out`). The fitted models answer this evaluation only: the process goes back to the ones it had."""
    articles, questions, spans = load(directory)
    if sample is not None and sample < len(questions):
        questions = random.Random(seed).sample(questions, sample)
    with tempfile.TemporaryDirectory(prefix="lessonbot-eval-") as scratch:
        # always an embedded store of its own: the evaluation never writes into the bot's courses
        eval_settings = replace(settings, chroma_host="", chroma_path=store_path or Path(scratch),
                                chroma_collection="eval")
        previous = ranking.in_use()
        try:
            return asyncio.run(
                _run(eval_settings, articles, questions, spans, mode=mode, extractive_only=extractive_only,
                     fit_to=fit_to, progress=progress)
            )
        finally:
            ranking.use(previous)


async def _run(
    settings: KnowledgeSettings,
    articles: Path,
    questions: list[Question],
    spans: dict[str, list[tuple[int, int]]],
    *,
    mode: Mode,
    extractive_only: bool,
    fit_to: Path | None,
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
    fitted: dict[str, Any] = {}
    if fit_to is not None:
        fitting = sorted(spans)[::2]  # every other article, in name order
        fitted = _fit(answerer, [q for q in questions if q.article in fitting], chunk_paragraph, fit_to, progress)

    records: list[Record] = []
    for done, question in enumerate(questions, start=1):
        records.append(await _ask(answerer, question, chunk_paragraph, allowed))
        if progress:
            progress(done, len(questions))

    result = {
        "questions": len(questions),
        "answerable": sum(r.question.answerable for r in records),
        "unanswerable": sum(not r.question.answerable for r in records),
        "retrieval": mode,
        "answers": "extractive" if answerer.model is None else f"model {answerer.model.model_name}",
        **_figures(records),
        "model_tokens": sum(r.tokens for r in records),
        "chunks": len(chunk_paragraph),
        "ingest_seconds": round(ingest_seconds, 1),
        "ingest": report.summary(),
        "threshold": round(ranking.models().threshold, 3),
        "tradeoff": _tradeoff(records),
    }
    fitted_on = set(ranking.models().fitted_on)
    held_out = [r for r in records if r.question.article not in fitted_on]
    if fitted_on and held_out and len(held_out) < len(records):
        result["held_out"] = {"questions": len(held_out), **_figures(held_out), "tradeoff": _tradeoff(held_out)}
    if fitted:
        result["fitted"] = fitted
    return result


async def _ask(
    answerer: Answerer, question: Question, chunk_paragraph: dict[str, tuple[str, int] | None], allowed: set[str]
) -> Record:
    record = Record(question)
    started = time.perf_counter()
    found = answerer.retriever.search(question.text, allowed_courses=allowed, limit=RANK_DEPTH)
    passages = found.passages
    answer = await answerer.compose(question.text, passages, learner="eval", allowed_courses=allowed,
                                    rarity=found.rarity)
    record.latency_ms = (time.perf_counter() - started) * 1000
    record.tokens = answer.tokens
    record.declined = answer.declined
    target = (question.article, question.paragraph)
    if not answer.declined:
        said = _said(answer.text)
        record.chars = len(said)
        record.hit = question.answerable and _holds(said, question.answers)
        record.cited_right = any(chunk_paragraph.get(id) == target for id in answer.passages)
    if question.answerable:
        paragraphs = list(dict.fromkeys(chunk_paragraph.get(p.chunk_id) for p in passages))
        record.rank = paragraphs.index(target) + 1 if target in paragraphs else None
    # the extractive quote whatever the threshold, for the trade-off table
    quoted = extractive.quote(question.text, passages, rarity=found.rarity)
    record.confidence = quoted.confidence
    record.quotable = bool(quoted.chosen) and quoted.shares_words
    record.settled = quoted.settled
    record.quote_hits = question.answerable and record.quotable and _holds(_said(quoted.text), question.answers)
    return record




def _said(text: str) -> str:
    """What an answer says, without its label and sources: the quoted sentences, or the model's words."""
    if text.startswith(FROM_YOUR_COURSE):
        lines = text[len(FROM_YOUR_COURSE) :].strip().split("\n")
        return "\n".join(line for line in lines if line and not line.startswith("— ")).strip()
    return text.rpartition(f"\n\n{FROM} ")[0] or text


def _holds(said: str, answers: tuple[str, ...]) -> bool:
    normalised = normalise(said)
    return any(normalise(a) and normalise(a) in normalised for a in answers)


def _share(count: float, total: int) -> float | None:
    return round(count / total, 3) if total else None


def _figures(records: list[Record]) -> dict[str, Any]:
    answerable = [r for r in records if r.question.answerable]
    unanswerable = [r for r in records if not r.question.answerable]
    ranks = [r.rank for r in answerable]
    answered = [r for r in records if not r.declined]
    cited = [r for r in answered if r.question.answerable and r.cited_right is not None]
    latencies = [r.latency_ms for r in records]
    return {
        "recall_at_1": _share(sum(1 for r in ranks if r == 1), len(answerable)),
        "recall_at_5": _share(sum(1 for r in ranks if r is not None and r <= 5), len(answerable)),
        "mrr_at_10": _share(sum(1 / r for r in ranks if r is not None), len(answerable)),
        "answer_hit_rate": _share(sum(r.hit for r in answerable), len(answerable)),
        "answer_chars_mean": round(sum(r.chars for r in answered) / len(answered), 1) if answered else None,
        "citation_correct": _share(sum(bool(r.cited_right) for r in cited), len(cited)),
        "declined_answerable": _share(sum(r.declined for r in answerable), len(answerable)),
        "decline_rate_unanswerable": _share(sum(r.declined for r in unanswerable), len(unanswerable)),
        "latency_ms_p50": round(_percentile(latencies, 0.50), 1),
        "latency_ms_p95": round(_percentile(latencies, 0.95), 1),
    }


TRADEOFF_ANSWERED = (1.0, 0.99, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60)


def _tradeoff(records: list[Record]) -> list[dict[str, float | None]]:
    """Extractive answers at thresholds that answer a given share of the answerable questions: the hit rate and the
    unanswerable questions declined at each."""
    answerable = [r for r in records if r.question.answerable]
    unanswerable = [r for r in records if not r.question.answerable]
    confidences = sorted(r.confidence for r in answerable if r.quotable)
    if not confidences:
        return []
    rows = []
    for target in TRADEOFF_ANSWERED:
        cut = int(round((1 - target) * len(answerable)))
        threshold = confidences[min(cut, len(confidences) - 1)] if cut else 0.0
        answered = [r for r in answerable if r.quotable and (r.confidence >= threshold or r.settled)]
        rows.append({
            "threshold": round(threshold, 3),
            "answered_answerable": _share(len(answered), len(answerable)),
            "answer_hit_rate": _share(sum(r.quote_hits for r in answered), len(answerable)),
            "decline_rate_unanswerable": _share(
                sum(not (r.quotable and (r.confidence >= threshold or r.settled)) for r in unanswerable),
                len(unanswerable),
            ),
        })
    return rows


# --- fitting ------------------------------------------------------------------------------------------------------

FIT_ANSWERED = 0.905  # the threshold answers this share of the answerable fitting questions (≥ 90 % held out)
# a next best sentence's probability per character of it, at least, for it to be quoted too (1: one sentence)
QUOTE_PER_CHARACTER_GRID = (0.0002, 0.00025, 0.0003, 0.00035, 0.0004, 0.00045, 0.0005, 0.0006, 0.0008, 0.001, 1.0)
FIT_MEAN_CHARACTERS = 285  # the longest average quote the rule may give on the fitting questions (≤ 300 on all:
# the held-out articles' quotes came out 6 to 13 characters longer)
QUOTE_SLACK = 0.003  # hits a shorter quote may give up against the most hits


def _fit(
    answerer: Answerer,
    questions: list[Question],
    chunk_paragraph: dict[str, tuple[str, int] | None],
    fit_to: Path,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Fit the three ranking models on `questions` (one after the other: each needs the one before) and use them."""
    allowed = {COURSE}
    retriever = answerer.retriever
    rarity = retriever.rarity(allowed)
    start = ranking.Models.neutral()
    found = []
    for done, question in enumerate(questions, start=1):
        found.append(retriever.candidates(question.text, allowed_courses=allowed))
        if progress:
            progress(done, len(questions))

    # 1. passages: the candidate holding the gold paragraph first
    groups = []
    for question, candidates in zip(questions, found, strict=True):
        if question.answerable and candidates:
            target = (question.article, question.paragraph)
            right = [chunk_paragraph.get(c.chunk.id) == target for c in candidates]
            groups.append((np.asarray([c.features for c in candidates]), np.asarray(right)))
    passages = ranking.fit_listwise(groups, ranking.PASSAGE_FEATURES)
    ranking.use(replace(start, passages=passages))
    ranked = [retriever.rank(candidates)[:RANK_DEPTH] for candidates in found]
    models, fitted = fit_answers(questions, ranked, rarity, passages)
    models.save(fit_to)
    ranking.use(models)
    return {**fitted, "written": str(fit_to)}


def fit_answers(
    questions: list[Question],
    ranked: list[list[Passage]],
    rarity: Callable[[str], float],
    passages: ranking.Linear,
) -> tuple[ranking.Models, dict[str, Any]]:
    """The sentence model, how many sentences to quote and the answerability model, fitted on `questions` with
    their passages as `passages` ranked them; the models, and what the fit found."""
    start = replace(ranking.Models.neutral(), passages=passages)
    # 2. sentences: the sentence holding a gold answer first, among the best passages' sentences
    groups = []
    for question, passages_found in zip(questions, ranked, strict=True):
        if question.answerable and passages_found:
            asked = ranking.Question.of(question.text, rarity)
            units, unit_rows = extractive.sentence_rows(asked, passages_found[: extractive.PASSAGES])
            groups.append((np.asarray(unit_rows), np.asarray([_holds(unit, question.answers) for *_, unit in units])))
    sentences = ranking.fit_listwise(groups, ranking.SENTENCE_FEATURES)

    # 3. more sentences when the first is unsure: the most hits within the length allowed
    answerable_ranked = [(q, p) for q, p in zip(questions, ranked, strict=True) if q.answerable]
    tried: list[tuple[float, int, float]] = []  # (mean characters, hits, quote_per_character)
    for level in QUOTE_PER_CHARACTER_GRID:
        ranking.use(replace(start, passages=passages, sentences=sentences, quote_per_character=level))
        quotes = [(q, extractive.quote(q.text, p, rarity=rarity)) for q, p in answerable_ranked]
        said = [(q, _said(quote.text)) for q, quote in quotes if quote.chosen]
        if said:
            mean = sum(len(text) for _, text in said) / len(said)
            tried.append((mean, sum(_holds(text, q.answers) for q, text in said), level))
    allowed_lengths = [row for row in tried if row[0] <= FIT_MEAN_CHARACTERS] or [min(tried)]
    most = max(hits for _, hits, _ in allowed_lengths)
    # the shortest quotes that hit within QUOTE_SLACK of the most hits
    best = min((row for row in allowed_lengths if row[1] >= most - QUOTE_SLACK * len(answerable_ranked)),
               key=lambda row: row[0])
    quote_per_character = best[2]
    ranking.use(replace(start, passages=passages, sentences=sentences, quote_per_character=quote_per_character))

    # 4. answerability: the quote answers the question, told apart from an unanswerable question
    final_quotes = [extractive.quote(q.text, p, rarity=rarity) for q, p in zip(questions, ranked, strict=True)]
    rows, labels, answerable_rows = answerability_examples(questions, final_quotes)
    answerable = ranking.fit_logistic(np.asarray(rows), np.asarray(labels, dtype=np.float64),
                                      ranking.ANSWER_FEATURES)
    probabilities = 1 / (1 + np.exp(-answerable.scores(answerable_rows)))
    threshold = float(np.quantile(probabilities, 1 - FIT_ANSWERED))
    models = ranking.Models(
        passages=passages, sentences=sentences, answerable=answerable, threshold=threshold,
        quote_per_character=quote_per_character, fitted_on=tuple(sorted({q.article for q in questions})),
    )
    ranking.use(models)
    return models, {
        "questions": len(questions),
        "articles": len(models.fitted_on),
        "threshold": round(threshold, 3),
        "quote_per_character": quote_per_character,
        # (a next sentence's probability per character, mean characters, hits per answerable question)
        "quote_per_character_tried": [[level, round(mean, 1), round(hits / len(answerable_ranked), 3)]
                                  for mean, hits, level in tried],
    }


def answerability_examples(
    questions: list[Question], quotes: list[extractive.Quote]
) -> tuple[list[tuple[float, ...]], list[bool], list[tuple[float, ...]]]:
    """What the answerability model is fitted on: the features of quotes that answer their (answerable) question,
    labelled True, and of unanswerable questions' quotes, labelled False; an answerable question whose quote misses
    is left out, as it teaches nothing either way (fitted on "answerable" alone, the declines fell on hits and misses
    alike: at 90 % answered, squad-dev's hit rate .813 with .429 declined, against .821 and .419). Then the features
    of every answerable question's quote, which the threshold is set on."""
    rows: list[tuple[float, ...]] = []
    labels: list[bool] = []
    answerable_rows: list[tuple[float, ...]] = []
    for question, quote in zip(questions, quotes, strict=True):
        if not quote.chosen:
            continue
        if question.answerable:
            answerable_rows.append(quote.features)
        if not question.answerable or _holds(_said(quote.text), question.answers):
            rows.append(quote.features)
            labels.append(question.answerable)
    return rows, labels, answerable_rows


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
    lines = [
        f"{result['questions']} questions ({result['answerable']} answerable, {result['unanswerable']} not); "
        f"retrieval: {result['retrieval']}; answers: {result['answers']}",
        *_figure_lines(result),
        f"  {result['chunks']} chunks, ingested in {result['ingest_seconds']} s; "
        f"model tokens {result['model_tokens']}",
    ]
    if "fitted" in result:
        fitted = result["fitted"]
        lines.append(f"fitted on {fitted['questions']} questions of {fitted['articles']} articles: threshold "
                     f"{fitted['threshold']}, a next sentence quoted from probability "
                     f"{fitted['quote_per_character']} a character; written to {fitted['written']}")
    if "held_out" in result:
        lines += [f"held out (articles the models were not fitted on): {result['held_out']['questions']} questions",
                  *_figure_lines(result["held_out"])]
    return "\n".join(lines)


def _figure_lines(figures: dict[str, Any]) -> list[str]:
    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = [
        f"  recall@1 {pct(figures['recall_at_1'])}   recall@5 {pct(figures['recall_at_5'])}   "
        f"MRR@10 {pct(figures['mrr_at_10'])}",
        f"  answer hit rate {pct(figures['answer_hit_rate'])} at {figures['answer_chars_mean']} characters on average "
        f"(answerable; declined {pct(figures['declined_answerable'])}); "
        f"citations right {pct(figures['citation_correct'])}",
        f"  decline rate {pct(figures['decline_rate_unanswerable'])} (unanswerable)",
        f"  latency p50 {figures['latency_ms_p50']} ms   p95 {figures['latency_ms_p95']} ms",
    ]
    if figures.get("tradeoff"):
        lines.append("  threshold  answered (answerable)  hit rate  declined (unanswerable)")
        lines += [f"  {row['threshold']:>9.3f}  {pct(row['answered_answerable']):>21}  "
                  f"{pct(row['answer_hit_rate']):>8}  {pct(row['decline_rate_unanswerable']):>23}"
                  for row in figures["tradeoff"]]
    return lines
