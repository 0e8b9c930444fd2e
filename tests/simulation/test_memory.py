"""The simulated learner's memory and answers: the rating the bot would give, and a memory that behaves like one."""

from __future__ import annotations

import numpy as np

from dialogs.review import rating_for
from simulation import memory
from storage.courses import SHORT_TEXT


def test_answers_are_rated_as_the_bot_rates_them():
    seconds = np.array([-1.0, 0.5, 8.0, 8.01, 15.0, 15.01, 30.0, 30.01, 60.0, 60.01, 599.0, 600.0, 600.5, 4000.0])
    for typed in (False, True):
        for correct in (False, True):
            got = memory.ratings(np.full(len(seconds), correct), seconds, np.full(len(seconds), typed))
            expected = [int(rating_for(correct=correct, seconds=float(value), kind=SHORT_TEXT if typed else "pick"))
                        for value in seconds]
            assert got.tolist() == expected


def test_recall_fades_with_time_and_lasts_longer_when_stable():
    days = np.array([0.0, 1.0, 10.0, 100.0])
    weak, strong = memory.recall(days, np.full(4, 2.0)), memory.recall(days, np.full(4, 20.0))
    assert weak[0] == strong[0] == 1.0
    assert np.all(np.diff(weak) < 0) and np.all(strong[1:] > weak[1:])
    assert abs(float(memory.recall(np.array([20.0]), np.array([20.0]))[0]) - 0.9) < 1e-9  # S: 90 % after S days


def test_a_recall_strengthens_memory_and_a_lapse_weakens_it():
    stability, difficulty, probability = np.full(4, 10.0), np.full(4, 5.0), np.full(4, 0.8)
    rating = np.array([memory.AGAIN, memory.HARD, memory.GOOD, memory.EASY], dtype=np.int8)
    after, _ = memory.next_memory(stability, difficulty, probability, rating, np.ones(4))
    assert after[0] < 10.0 < after[1] < after[2] < after[3]
    slower, _ = memory.next_memory(stability, difficulty, probability, rating, np.full(4, 0.5))
    assert np.all(slower[1:] < after[1:])  # a learner who forgets faster builds less


def test_a_learner_who_does_not_recall_is_right_only_by_guessing():
    rng = np.random.default_rng(3)
    n = 20_000
    typed = np.arange(n) % 2 == 0
    answers = memory.answer(rng, np.zeros(n), typed, np.ones(n))
    assert not answers.recalled.any() and not answers.correct[typed].any()
    assert abs(answers.correct[~typed].mean() - 1 / memory.CHOICES) < 0.02
