"""The knowledge commands: `lessonbot ingest`, `lessonbot eval knowledge`, `lessonbot bench knowledge` (its bench:
bench/knowledge.py).

Heavy imports (chromadb, onnxruntime) stay inside the command functions, so `lessonbot --help` stays fast. This is
wiring (it is given the bot's settings): each command hands knowledge only its part, `bot.config.knowledge_settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.database import database
from bot.cli.groups import subcommands
from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.config import Settings

SHIPPED_MODELS = Path("-")  # `--fit` alone: the models the bot uses, knowledge/ranking.py's MODEL_FILE

# 16 SQuAD 2.0 articles and their questions, shipped with the project (its README says whence)
SQUAD_DEV = Path(__file__).resolve().parents[2] / "bench" / "datasets" / "squad-dev"


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="add course material (Markdown, HTML, PDF, text; a file or a folder) to the knowledge store"
    )
    ingest.add_argument("path", type=Path, help="a course file, or a folder of them")
    ingest.add_argument("--course", required=True, metavar="ID", help="the course the material belongs to")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest, uses_database=True)

    evaluate = subcommands(subparsers, "eval", "measure answer quality against a dataset").add_parser(
        "knowledge", help="retrieval and answers on a SQuAD-format set (recall@k, MRR, hit and decline rates)"
    )
    evaluate.add_argument("dir", type=Path, help="a SQuAD JSON file and its articles (like bench/datasets/squad-dev)")
    evaluate.add_argument("--sample", type=whole(least=1), metavar="N",
                          help="ask N questions drawn at random (default: all)")
    evaluate.add_argument("--seed", type=whole(), default=0, help="seed of the sample (default 0)")
    evaluate.add_argument("--retrieval", choices=["hybrid", "fused", "dense", "keyword"], default="hybrid",
                          help="hybrid (default): fused, then re-ranked; the others to compare against")
    evaluate.add_argument("--extractive", action="store_true", help="extractive answers even when a model is set")
    evaluate.add_argument("--store", type=Path, help="keep the ingested articles here (default: a scratch folder)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument("--fit", nargs="?", type=Path, const=SHIPPED_MODELS, metavar="FILE",
                          help="fit the ranking models on half of the articles first and write them to FILE "
                               "(default: knowledge/ranking.json, what the bot uses); the other half is reported apart")
    evaluate.set_defaults(func=cmd_eval)

    bench = subcommands(subparsers, "bench", "measure the bot's speed").add_parser(
        "knowledge", help="ingest throughput and query latency of the knowledge store at 10,000+ chunks"
    )
    bench.add_argument("--dataset", type=Path, help="articles to make chunks from (default: bench/datasets/squad-dev)")
    bench.add_argument("--chunks", type=whole(least=1), nargs="+", default=[10_000], help="store sizes (default 10000)")
    bench.add_argument("--queries", type=whole(least=1), default=200, help="queries timed at each size (default 200)")
    bench.add_argument("--embedded", type=whole(least=1), default=None, metavar="N",
                       help="embed at most N distinct chunks and reuse their vectors beyond that (default: embed all)")
    bench.add_argument("--store", type=Path, help="where to build the stores (default: a scratch folder)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_bench)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.config import knowledge_settings
    from knowledge.embeddings import EmbeddingsNotConfigured, ModelFilesMissing
    from knowledge.ingest import ingest_path
    from knowledge.store import EmbeddingModelMismatch, StoreUnavailable, open_store

    if not args.path.exists():
        print(f"{args.path} does not exist: give a course file or a folder of them.", file=sys.stderr)
        return 2
    if (unknown := asyncio.run(_unknown_course(settings, args.course))) is not None:
        print(unknown, file=sys.stderr)
        return 2
    try:
        store = open_store(knowledge_settings(settings))
    except (EmbeddingModelMismatch, StoreUnavailable, ModelFilesMissing, EmbeddingsNotConfigured) as exc:
        print(exc, file=sys.stderr)
        return 2

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet or not total:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="chunk", desc=f"Embedding {args.course}", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        report = ingest_path(store, args.path, course_id=args.course, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for _file, reason in report.failures:
        print(f"skipped: {reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failures else 0


async def _unknown_course(settings: Settings, slug: str) -> str | None:
    """Why `slug` names no course (material for a course nobody can enrol in is never searched), or None."""
    from difflib import get_close_matches

    from sqlalchemy import select

    from storage.courses import Course

    async with database(settings, pool_size=1) as db, db.sessions() as session:
        slugs = list(await session.scalars(select(Course.slug).order_by(Course.slug)))
    if slug in slugs:
        return None
    if not slugs:
        return (f"There is no course {slug!r}: there are no courses yet. Import one first "
                "(lessonbot course import PATH), then give its id with --course.")
    close = get_close_matches(slug, slugs, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"There is no course {slug!r}: {hint}--course takes the id of an imported course: "
            f"{', '.join(slugs)} (lessonbot course list).")


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from bot.config import knowledge_settings
    from knowledge.evaluation import DatasetError, evaluate, format_report
    from knowledge.ranking import MODEL_FILE

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.json:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="question", desc="Asking", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        result = evaluate(
            knowledge_settings(settings), args.dir, sample=args.sample, seed=args.seed, mode=args.retrieval,
            extractive_only=args.extractive, store_path=args.store,
            fit_to=MODEL_FILE if args.fit == SHIPPED_MODELS else args.fit, progress=progress,
        )
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from bench.knowledge import format_results, run
    from bot.config import knowledge_settings

    dataset = args.dataset or SQUAD_DEV
    if not dataset.is_dir():
        print(f"{dataset} is not a folder of articles: give one with --dataset.", file=sys.stderr)
        return 2
    results = run(
        knowledge_settings(settings), dataset,
        sizes=args.chunks, queries=args.queries, embedded=args.embedded, store_path=args.store,
        log=None if args.json else (lambda line: print(line, file=sys.stderr)),
    )
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0
