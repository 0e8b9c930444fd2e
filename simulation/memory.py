"""What a simulated learner really remembers, and how they answer: the ground truth the policies are measured by.

Memory is the FSRS-6 model (stability S in days, difficulty D from 1 to 10, recall R = (1 + F·t/S)^-w20 after t
days) with the parameters the bot's scheduler assumes, bent per learner and per question, so that the scheduler is
never exactly right about anybody:
- `memory`: a learner's stabilities are this factor of what the model expects (log-normal, median 0.9: most
  forget a little faster than the scheduler assumes, some much faster, some slower);
- `difficulty`: each question is harder or easier for each learner than its first rating says (±1 on the 1–10 scale);
- `attendance`: the chance of showing up on a day (Beta(6, 1.5), mean 0.8): due questions wait for the next visit,
  so reviews come late;
- `pace`: how slow a learner is (log-normal): it moves answers between Easy, Good and Hard.

An answer: the learner recalls the question with probability R; a multiple-choice question (two learners in three
meet one with three options) is also guessed right a third of the time; one answer in twenty comes after the learner
left the chat for a while (`AWAY_SHARE`), and each is followed by the bot's feedback, which takes a few seconds
to read. How long an answer takes grows as R falls; the bot's own thresholds
(`dialogs.review.PACE`, `AWAY_SECONDS`) turn it into the rating the scheduler is given. The learner's memory grows
by what really happened: a recall strengthens it, a guess or a blank is a lapse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fsrs import Rating

from dialogs.review import AWAY_SECONDS, PACE, SCHEDULER

W = np.array(SCHEDULER.parameters)
DECAY = -W[20]
FACTOR = 0.9 ** (1 / DECAY) - 1
AGAIN, HARD, GOOD, EASY = (int(rating) for rating in (Rating.Again, Rating.Hard, Rating.Good, Rating.Easy))
LESSON_RECALL = 0.85  # the chance of knowing a question's answer right after its lesson
CHOICES = 3  # options of a multiple-choice question
TYPED_SHARE = 1 / 3  # questions answered by typing (no guessing)
AWAY_SHARE = 0.05  # answers that come after the learner left the chat for a while
STUDY_SECONDS_WHEN_AWAY = 60.0  # what an answer from someone who was away costs them in study time
FEEDBACK_SECONDS = 8.0  # reading the bot's feedback after an answer
MIN_STABILITY = 0.01


@dataclass(frozen=True)
class Population:
    """The learners of one run: per learner (length L) and per learner and question (L × Q)."""

    memory: np.ndarray  # L: factor on every stability the learner builds
    attendance: np.ndarray  # L: the chance of showing up on a given day
    pace: np.ndarray  # L: factor on answer times
    difficulty: np.ndarray  # L × Q: added to each question's difficulty for this learner
    typed: np.ndarray  # Q: the question is answered by typing

    @property
    def learners(self) -> int:
        return len(self.memory)

    @property
    def questions(self) -> int:
        return len(self.typed)


def draw_population(rng: np.random.Generator, learners: int, questions: int) -> Population:
    typed = np.zeros(questions, dtype=bool)
    typed[rng.permutation(questions)[: round(questions * TYPED_SHARE)]] = True
    return Population(
        memory=rng.lognormal(np.log(0.9), 0.35, learners),
        attendance=rng.beta(6.0, 1.5, learners),
        pace=rng.lognormal(0.0, 0.3, learners),
        difficulty=rng.normal(0.0, 1.0, (learners, questions)),
        typed=typed,
    )


def attendance(rng: np.random.Generator, population: Population, days: int) -> np.ndarray:
    """L × days: who shows up on which day (everybody on the first day, when they start)."""
    present = rng.random((population.learners, days)) < population.attendance[:, None]
    present[:, 0] = True
    return present


def recall(elapsed_days: np.ndarray, stability: np.ndarray) -> np.ndarray:
    """R: the chance of recalling after `elapsed_days` with `stability`."""
    return (1 + FACTOR * np.maximum(elapsed_days, 0) / stability) ** DECAY


@dataclass(frozen=True)
class Answers:
    recalled: np.ndarray  # the learner knew it
    correct: np.ndarray  # the answer was right (recalled, or guessed)
    seconds: np.ndarray  # from question to answer, as the bot measures it
    study_seconds: np.ndarray  # the time the learner spent on it
    rating: np.ndarray  # what the bot's rating rule makes of it


def answer(rng: np.random.Generator, probability: np.ndarray, typed: np.ndarray, pace: np.ndarray) -> Answers:
    """One answer to each question asked: `probability` of recall, `typed` questions, the learners' `pace`."""
    n = len(probability)
    recalled = rng.random(n) < probability
    guessed = ~recalled & ~typed & (rng.random(n) < 1 / CHOICES)
    correct = recalled | guessed
    # a recalled answer is quick when the memory is fresh; a guess or a blank takes a while; typing takes longer
    median = np.where(recalled, 6.0 + 40.0 * (1 - probability), 25.0) * np.where(typed, 2.0, 1.0) * pace
    seconds = median * rng.lognormal(0.0, 0.4, n)
    away = rng.random(n) < AWAY_SHARE
    study = np.where(away, STUDY_SECONDS_WHEN_AWAY, seconds) + FEEDBACK_SECONDS
    seconds = np.where(away, AWAY_SECONDS + rng.random(n) * 6 * AWAY_SECONDS, seconds)
    return Answers(recalled, correct, seconds, study, ratings(correct, seconds, typed))


def ratings(correct: np.ndarray, seconds: np.ndarray, typed: np.ndarray) -> np.ndarray:
    """`dialogs.review.rating_for` over arrays, with the bot's thresholds (tests hold the two to the same answers)."""
    easy = np.where(typed, PACE["type"][0], PACE["pick"][0])
    good = np.where(typed, PACE["type"][1], PACE["pick"][1])
    timed = np.where(seconds <= easy, EASY, np.where(seconds <= good, GOOD, HARD))
    timed = np.where((seconds < 0) | (seconds > AWAY_SECONDS), GOOD, timed)
    return np.where(correct, timed, AGAIN).astype(np.int8)


def first_memory(rating: np.ndarray, memory: np.ndarray, difficulty_offset: np.ndarray) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """(stability, difficulty) after the first answer, rated `rating` by what really happened."""
    stability = W[rating - 1] * memory
    difficulty = np.clip(_initial_difficulty(rating) + difficulty_offset, 1.0, 10.0)
    return np.maximum(stability, MIN_STABILITY), difficulty


def next_memory(stability: np.ndarray, difficulty: np.ndarray, probability: np.ndarray, rating: np.ndarray,
                memory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stability, difficulty) after a review at recall `probability`, rated `rating` by what really happened."""
    hard = np.where(rating == HARD, W[15], 1.0)
    easy = np.where(rating == EASY, W[16], 1.0)
    grown = stability * (1 + memory * np.exp(W[8]) * (11 - difficulty) * stability ** -W[9]
                         * (np.exp((1 - probability) * W[10]) - 1) * hard * easy)
    lapsed = np.minimum(
        memory * W[11] * difficulty ** -W[12] * ((stability + 1) ** W[13] - 1) * np.exp((1 - probability) * W[14]),
        stability / np.exp(W[17] * W[18]),
    )
    stability = np.maximum(np.where(rating == AGAIN, lapsed, grown), MIN_STABILITY)
    damped = difficulty + (10.0 - difficulty) * -(W[6] * (rating - 3)) / 9.0
    difficulty = np.clip(W[7] * _initial_difficulty(np.full_like(rating, EASY)) + (1 - W[7]) * damped, 1.0, 10.0)
    return stability, difficulty


def _initial_difficulty(rating: np.ndarray) -> np.ndarray:
    return W[4] - np.exp(W[5] * (rating - 1)) + 1
