"""`lessonbot simulate reviews|nudges`: simulated learners under the bot's review scheduler and nudge bandit, beside
other policies (simulation/, docs/learning.md). Prints a table (or `--json`) and writes PNG charts."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.groups import subcommands
from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.config import Settings


MOST_LEARNERS = 1_000_000  # a simulation keeps every learner in memory
MOST_DAYS = 3650  # ten years of days, one step each


def register(subparsers: argparse._SubParsersAction) -> None:
    kinds = subcommands(subparsers, "simulate", "simulated learners: does the learning work (docs/learning.md)")
    for name, run, summary in (
        ("reviews", cmd_reviews, "recall and review time under the bot's review scheduler, SM-2, fixed intervals, "
                                 "no review"),
        ("nudges", cmd_nudges, "learners brought back by the bot's nudge bandit, uniform choice, the best fixed "
                               "template"),
    ):
        parser = kinds.add_parser(name, help=summary, description=summary)
        parser.add_argument("--learners", type=whole(least=1, most=MOST_LEARNERS), default=10_000,
                            help="simulated learners (default 10000)")
        parser.add_argument("--days", type=whole(least=1, most=MOST_DAYS), default=180,
                            help="days simulated (default 180)")
        parser.add_argument("--seed", type=whole(), default=1, help="the same seed gives the same results (default 1)")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")
        parser.add_argument("--charts", type=Path, help="folder for the PNG charts (default DATA_DIR/simulation)")
        parser.set_defaults(func=run)


def _progress(args: argparse.Namespace) -> Callable[[str], None]:
    return lambda line: None if args.json else print(line, file=sys.stderr, flush=True)


def _charts_folder(settings: Settings, args: argparse.Namespace) -> Path | None:
    """The folder for the charts, made now, before a simulation that may take minutes; None (and why, said) if it
    cannot be made or written."""
    folder: Path = args.charts if args.charts is not None else settings.data_dir / "simulation"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # (what mkdir raises for a file of that name, even with exist_ok)
        reason = "it is a file, not a folder"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    else:
        if os.access(folder, os.W_OK):
            return folder
        reason = os.strerror(errno.EACCES)
    print(_cannot_write(folder, reason), file=sys.stderr)
    return None


def _cannot_write(path: object, reason: str) -> str:
    return f"Cannot write {path}: {reason}. Give --charts a folder you may write (it is made if missing)."


def _show(results: dict[str, Any], table: str, draw: Callable[[], list[Path]], args: argparse.Namespace) -> int:
    """Draw the charts, then print the results with where the charts are."""
    try:
        charts = draw()
    except OSError as exc:  # (the folder could be written before the simulation: a chart's name taken, a full disk)
        print(_cannot_write(exc.filename or "the charts", exc.strerror or str(exc)), file=sys.stderr)
        return 2
    results["charts"] = [str(path) for path in charts]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table)
        print("charts: " + ", ".join(str(path) for path in charts))
    return 0


def cmd_reviews(settings: Settings, args: argparse.Namespace) -> int:
    from simulation import report, reviews

    folder = _charts_folder(settings, args)
    if folder is None:
        return 2
    setup = reviews.Setup(args.learners, args.days, args.seed)
    outcomes = reviews.simulate(setup, time.perf_counter, progress=_progress(args))
    results = report.review_results(setup, outcomes)
    return _show(results, report.review_table(results), lambda: report.review_charts(outcomes, folder), args)


def cmd_nudges(settings: Settings, args: argparse.Namespace) -> int:
    from simulation import nudges, report

    folder = _charts_folder(settings, args)
    if folder is None:
        return 2
    setup = nudges.Setup(args.learners, args.days, args.seed)
    outcomes, best_fixed = nudges.simulate(setup, time.perf_counter, progress=_progress(args))
    results = report.nudge_results(setup, outcomes, best_fixed)
    return _show(results, report.nudge_table(results), lambda: [report.nudge_chart(outcomes, best_fixed, folder)],
                 args)
