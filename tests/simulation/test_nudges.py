"""`simulate nudges` at a small scale: the bot's planner and bandit, against uniform and fixed template choices."""

from __future__ import annotations

import time

import pytest

from dialogs.nudges import FAREWELL, INACTIVE, templates
from simulation import nudges, report

SETUP = nudges.Setup(learners=400, days=60, seed=3)


@pytest.fixture(scope="module")
def results():
    return report.nudge_results(SETUP, *nudges.simulate(SETUP, time.perf_counter))


def test_the_same_seed_gives_the_same_results(results):
    population = nudges.population_for(SETUP)
    again = nudges.run(nudges.Bandit(SETUP.seed), SETUP, population, time.perf_counter)
    bandit = results["policies"]["bandit"]
    assert (round(again.regret, 1), again.returned, again.nudges) == (bandit["regret"], bandit["learners_returned"],
                                                            bandit["nudges"])
    other = nudges.Setup(SETUP.learners, SETUP.days, seed=4)
    assert nudges.run(nudges.Bandit(4), other, nudges.population_for(other), time.perf_counter).nudges != \
        bandit["nudges"]


def test_the_bandit_regrets_less_than_picking_at_random_and_than_any_fixed_template(results):
    policies = results["policies"]
    assert set(policies) == {"bandit", "uniform", "best_fixed"}
    assert policies["bandit"]["regret"] < 0.8 * policies["uniform"]["regret"]
    assert policies["bandit"]["regret"] < policies["best_fixed"]["regret"]
    assert policies["bandit"]["learners_returned"] > policies["best_fixed"]["learners_returned"]
    for policy in policies.values():
        assert policy["nudges_per_return"] == pytest.approx(policy["nudges"] / policy["learners_returned"], abs=0.01)


def test_the_bandit_sends_the_template_that_works_best_more_often(results):
    sent = results["policies"]["bandit"]["sent"]
    assert sent["farewell-door-open"] > sent["farewell-place-saved"]


def test_the_planner_decides_who_is_nudged_and_when(results):
    """Every policy meets the same learners and the same planner: about as many nudges each, farewells the fewest."""
    counts = [policy["nudges"] for policy in results["policies"].values()]
    assert max(counts) < 1.2 * min(counts)
    sent = results["policies"]["uniform"]["sent"]
    assert sum(sent[name] for name in templates(FAREWELL)) < sum(sent[name] for name in templates(INACTIVE)) / 3


def test_a_template_without_a_ground_truth_stops_the_run():
    with pytest.raises(ValueError, match="the bot has"):
        nudges.check_truth({name: chance for name, chance in nudges.TRUTH.items() if name != "inactive-days"})


def test_the_table_and_the_chart(tmp_path):
    setup = nudges.Setup(30, 10, 1)
    outcomes, best_fixed = nudges.simulate(setup, time.perf_counter)
    assert "best_fixed (" in report.nudge_table(report.nudge_results(setup, outcomes, best_fixed))
    assert report.nudge_chart(outcomes, best_fixed, tmp_path).read_bytes()[:4] == b"\x89PNG"


def test_every_kind_the_planner_sends_is_chosen_for_and_the_best_fixed_choice_names_one_template_a_kind(results):
    sent = results["policies"]["bandit"]["sent"]
    assert all(sent[template] for kind in nudges.KINDS for template in templates(kind))  # streak savers too
    best = results["policies"]["best_fixed"]
    assert [template for template, count in best["sent"].items() if count] == best["templates"].split(" + ")
