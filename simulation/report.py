"""The results of a simulation: one dict per run (what `--json` prints), a table for people, and PNG charts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulation import nudges, reviews


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if not values.size:
        return {"p10": None, "p50": None, "p90": None}
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"p10": _round(p10), "p50": _round(p50), "p90": _round(p90)}


def _series(values: np.ndarray, digits: int) -> list[float | None]:
    """A curve for the JSON: one value a day."""
    return [_round(value, digits) for value in values.tolist()]


def review_results(setup: reviews.Setup, outcomes: Sequence[reviews.Outcome]) -> dict[str, Any]:
    policies = {}
    for outcome in outcomes:
        recall = {day: (_round(float(np.nanmean(values))), _percentiles(values))
                  for day, values in outcome.recall_at.items()}
        minutes = float(outcome.review_minutes.mean())
        policies[outcome.name] = {
            "reviews_per_learner": _round(outcome.reviews.mean(), 1),
            "recall_day_30": recall.get(30, (None, None))[0],
            "recall_day_90": recall.get(90, (None, None))[0],
            "review_minutes_per_learner": _round(minutes, 1),
            "recall_per_minute": _round(outcome.kept_by_review.mean() / minutes) if minutes else None,
            "spread": {
                "reviews_per_learner": _percentiles(outcome.reviews.astype(float)),
                "recall_day_30": recall.get(30, (None, None))[1],
                "recall_day_90": recall.get(90, (None, None))[1],
            },
            "seconds": _round(outcome.seconds, 1),
            "scheduler_calls": outcome.scheduler_calls,
            "recall_by_day": _series(outcome.recall_by_day, 4),
            "reviews_by_day": _series(outcome.reviews_by_day, 4),
        }
    return {"simulation": "reviews", "learners": setup.learners, "days": setup.days, "seed": setup.seed,
            "questions": setup.questions, "policies": policies}


def nudge_results(setup: nudges.Setup, outcomes: Sequence[nudges.Outcome], best_fixed: nudges.Outcome,
                  ) -> dict[str, Any]:
    policies: dict[str, dict[str, Any]] = {}
    for key, outcome in [*((outcome.name, outcome) for outcome in outcomes), ("best_fixed", best_fixed)]:
        policies[key] = {
            "regret": _round(outcome.regret, 1),
            "learners_returned": outcome.returned,
            "nudges_per_return": _round(outcome.nudges_per_return, 2),
            "nudges": outcome.nudges,
            "counted_back": outcome.counted_back,
            "sent": outcome.sent,
            "seconds": _round(outcome.seconds, 1),
            "regret_by_day": _series(outcome.regret_by_day, 1),
        }
    policies["best_fixed"]["templates"] = best_fixed.name
    return {"simulation": "nudges", "learners": setup.learners, "days": setup.days, "seed": setup.seed,
            "policies": policies}


def _cell(value: Any, suffix: str = "") -> str:
    return "—" if value is None else f"{value}{suffix}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def review_table(results: dict[str, Any]) -> str:
    rows = [("policy", "reviews/learner (p10–p90)", "recall day 30", "recall day 90 (p10–p90)", "review min/learner",
             "recall/min")]
    for name, policy in results["policies"].items():
        spread = policy["spread"]
        reviews_spread, recall_spread = spread["reviews_per_learner"], spread["recall_day_90"]
        rows.append((
            name,
            f"{policy['reviews_per_learner']} ({reviews_spread['p10']}–{reviews_spread['p90']})",
            _percent(policy["recall_day_30"]),
            f"{_percent(policy['recall_day_90'])}"
            + (f" ({_percent(recall_spread['p10'])}–{_percent(recall_spread['p90'])})" if recall_spread else ""),
            _cell(policy["review_minutes_per_learner"]),
            _cell(policy["recall_per_minute"]),
        ))
    return _table(rows, f"{results['learners']} learners × {results['days']} days, {results['questions']} "
                        f"questions, seed {results['seed']}")


def nudge_table(results: dict[str, Any]) -> str:
    rows = [("policy", "regret", "learners returned", "nudges per return", "nudges")]
    for name, policy in results["policies"].items():
        label = f"{name} ({policy['templates']})" if "templates" in policy else name
        rows.append((label, _cell(policy["regret"]), _cell(policy["learners_returned"]),
                     _cell(policy["nudges_per_return"]), _cell(policy["nudges"])))
    return _table(rows, f"{results['learners']} learners × {results['days']} days, seed {results['seed']}")


def _table(rows: Sequence[Sequence[str]], title: str) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [title] + ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                       for row in rows]
    return "\n".join(lines)


# Charts ---------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def review_charts(outcomes: Sequence[reviews.Outcome], folder: Path) -> list[Path]:
    """retention.png (mean true recall of what was learned, by day) and reviews-per-day.png, in `folder`."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, title, label, series in (
        ("retention.png", "True recall of the questions learned so far", "mean recall",
         lambda outcome: outcome.recall_by_day),
        ("reviews-per-day.png", "Reviews per learner per day", "reviews", lambda outcome: outcome.reviews_by_day),
    ):
        figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
        for outcome in outcomes:
            axes.plot(np.arange(len(series(outcome))), series(outcome), label=outcome.name, linewidth=1.4)
        axes.set(title=title, xlabel="day", ylabel=label)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(folder / filename)
        plt.close(figure)
        written.append(folder / filename)
    return written


def nudge_chart(outcomes: Sequence[nudges.Outcome], best_fixed: nudges.Outcome, folder: Path) -> Path:
    """regret.png: cumulative regret by day, in `folder`."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for label, outcome in [*((outcome.name, outcome) for outcome in outcomes),
                           (f"best fixed ({best_fixed.name})", best_fixed)]:
        axes.plot(np.arange(len(outcome.regret_by_day)), outcome.regret_by_day, label=label, linewidth=1.4)
    axes.set(title="Regret of the nudge template choice", xlabel="day", ylabel="cumulative regret (returns)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = folder / "regret.png"
    figure.savefig(path)
    plt.close(figure)
    return path
