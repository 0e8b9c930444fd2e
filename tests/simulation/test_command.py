"""`lessonbot simulate reviews|nudges`: the options, the JSON other tools read, the charts, and mistyped options."""

from __future__ import annotations

import json

import pytest

from bot.cli import main


@pytest.fixture
def simulate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["simulate", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_reviews_as_json(simulate, tmp_path):
    code, out, _ = simulate("reviews", "--learners", "30", "--days", "35", "--seed", "2", "--json")
    assert code == 0
    results = json.loads(out)
    assert (results["learners"], results["days"], results["seed"]) == (30, 35, 2)
    assert {"fsrs", "sm2", "fixed", "none"} <= set(results["policies"])
    fsrs = results["policies"]["fsrs"]
    assert fsrs["reviews_per_learner"] > 0 and 0 < fsrs["recall_day_30"] <= 1
    assert fsrs["recall_day_90"] is None  # the run ended before day 90
    assert len(fsrs["recall_by_day"]) == len(fsrs["reviews_by_day"]) == 35  # the curves, a value a day
    assert sorted(results["charts"]) == [str(tmp_path / "var" / "simulation" / name)
                                         for name in ("retention.png", "reviews-per-day.png")]


def test_nudges_as_a_table_with_charts_where_asked(simulate, tmp_path):
    code, out, err = simulate("nudges", "--learners", "20", "--days", "5", "--charts", str(tmp_path / "charts"))
    assert code == 0
    assert "bandit" in out and "uniform" in out and "best_fixed" in out
    code, out, _ = simulate("nudges", "--learners", "20", "--days", "5", "--json")
    regret = json.loads(out)["policies"]["bandit"]["regret_by_day"]
    assert len(regret) == 5 and regret == sorted(regret)  # cumulative, a value a day
    assert (tmp_path / "charts" / "regret.png").exists()
    assert "bandit:" in err  # progress, on stderr


@pytest.mark.parametrize(("argv", "says"), [
    (["reviews", "--learners", "0"], "0 is not a positive number"),
    (["nudges", "--days", "many"], "'many' is not a whole number"),
    (["lessons"], "invalid choice"),
])
def test_mistyped_options_are_named(simulate, capsys, argv, says):
    with pytest.raises(SystemExit) as stopped:
        simulate(*argv)
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err
