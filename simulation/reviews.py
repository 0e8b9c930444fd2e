"""`lessonbot simulate reviews`: learners take a course's questions under each review policy; what they remember.

Every learner starts on day 0 and takes one lesson (QUESTIONS_PER_LESSON questions, answered right after it) on each
day they show up, until the course is done; on those days they also answer every question that is due. A policy is
what sets the next due day after each answer:
- `fsrs`: the bot's scheduler, called as the bot calls it (`dialogs.review.schedule`, fuzzing and all), at the bot's
  desired retention; `fsrs-0.80`, `fsrs-0.95`: the same at other desired retentions (`dialogs.review.scheduler_for`);
- `sm2`: SuperMemo-2 (Wozniak, 1990), the rating mapped to its 0–5 grade (Again 1, Hard 3, Good 4, Easy 5);
- `fixed`: 1, 3, 7, 14, 30 days after the answers before, then every 30 days, whatever the answers;
- `none`: no review.

Every policy meets the same learners (same memory, attendance and pace) and the same days off, so the differences
are the policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

import numpy as np
from fsrs import Card, Rating, State

from dialogs.review import DESIRED_RETENTION, schedule, scheduler_for
from simulation import memory
from simulation.memory import Population

LESSONS = 20
QUESTIONS_PER_LESSON = 2
FIXED_INTERVALS = (1, 3, 7, 14, 30)
SM2_GRADE = {memory.AGAIN: 1, memory.HARD: 3, memory.GOOD: 4, memory.EASY: 5}
NEVER = np.iinfo(np.int32).max
CHECKPOINTS = (30, 90)  # days whose recall is reported
START = datetime(2026, 1, 5, 18, 0, tzinfo=timezone.utc)  # day 0; every answer of a day is given at this hour


class Policy(Protocol):
    name: str

    def start(self, cards: int) -> None:
        """Forget every card: `cards` new ones, numbered 0 … cards-1."""

    def answered(self, cards: np.ndarray, day: int, ratings: np.ndarray) -> np.ndarray:
        """The due day of each of `cards` after answers rated `ratings` on `day`."""


@dataclass
class Fsrs:
    """The bot's review scheduler at a desired retention, without its fuzzing (see `answered`)."""

    retention: float = DESIRED_RETENTION
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or ("fsrs" if self.retention == DESIRED_RETENTION else f"fsrs-{self.retention:.2f}")
        self._scheduler = scheduler_for(self.retention, fuzzing=False)
        self._ratings = {int(rating): rating for rating in Rating}
        self.asked = 0  # calls to the scheduler (the rest of the answers were known)

    def start(self, cards: int) -> None:
        self._stability = np.zeros(cards)
        self._difficulty = np.zeros(cards)
        self._last = np.full(cards, -1, dtype=np.int64)
        self._known: dict[object, tuple[float, float, int]] = {}

    def answered(self, cards: np.ndarray, day: int, ratings: np.ndarray) -> np.ndarray:
        """The scheduler's answer for each card. Without fuzzing it is a function of the card's stability and
        difficulty, the days since its last review and the rating, so each distinct question is put to it once and
        its answer kept: learners who share a history share a schedule, and a run of millions of answers asks the
        scheduler a few hundred thousand times."""
        at = START + timedelta(days=day)
        last = self._last[cards]
        elapsed = np.where(last < 0, -1, day - last)  # -1: a new card
        answers = [
            self._known.get(key) or self._ask(key, at)
            for key in zip(self._stability[cards].tolist(), self._difficulty[cards].tolist(),
                           elapsed.tolist(), ratings.tolist(), strict=True)
        ]
        stability, difficulty, interval = (np.array(column) for column in zip(*answers, strict=True))
        self._stability[cards], self._difficulty[cards], self._last[cards] = stability, difficulty, day
        return day + interval

    def _ask(self, key: tuple[float, float, int, int], at: datetime) -> tuple[float, float, int]:
        stability, difficulty, elapsed, rating = key
        card = None if elapsed < 0 else Card(
            card_id=0, state=State.Review, step=None, stability=stability, difficulty=difficulty, due=at,
            last_review=at - timedelta(days=elapsed))
        after = schedule(card, self._ratings[rating], at, card_id=0, scheduler=self._scheduler)
        self.asked += 1
        answer = (float(after.stability or 0), float(after.difficulty or 0), (after.due - at).days)
        self._known[key] = answer
        return answer


@dataclass
class Sm2:
    """SuperMemo-2: an ease factor per card, intervals of 1 and 6 days, then the last one times the ease."""

    name: str = "sm2"

    def start(self, cards: int) -> None:
        self._ease = np.full(cards, 2.5)
        self._repetitions = np.zeros(cards, dtype=np.int32)
        self._interval = np.zeros(cards, dtype=np.int32)

    def answered(self, cards: np.ndarray, day: int, ratings: np.ndarray) -> np.ndarray:
        grade = np.select([ratings == rating for rating in SM2_GRADE], list(SM2_GRADE.values()))
        repetitions, interval = self._repetitions[cards], self._interval[cards]
        interval = np.where(grade < 3, 1, np.where(repetitions == 0, 1, np.where(
            repetitions == 1, 6, np.rint(interval * self._ease[cards]).astype(np.int32))))
        self._repetitions[cards] = np.where(grade < 3, 0, repetitions + 1)
        self._interval[cards] = interval
        self._ease[cards] = np.maximum(1.3, self._ease[cards] + 0.1 - (5 - grade) * (0.08 + (5 - grade) * 0.02))
        return day + interval


@dataclass
class Fixed:
    """The same intervals for every question, whatever the answers."""

    intervals: tuple[int, ...] = FIXED_INTERVALS
    name: str = "fixed"

    def start(self, cards: int) -> None:
        self._answers = np.zeros(cards, dtype=np.int32)

    def answered(self, cards: np.ndarray, day: int, ratings: np.ndarray) -> np.ndarray:
        steps = np.array(self.intervals)
        interval = steps[np.minimum(self._answers[cards], len(steps) - 1)]
        self._answers[cards] += 1
        return day + interval


@dataclass
class NoReview:
    name: str = "none"

    def start(self, cards: int) -> None:
        pass

    def answered(self, cards: np.ndarray, day: int, ratings: np.ndarray) -> np.ndarray:
        return np.full(len(cards), NEVER, dtype=np.int64)


def policies() -> Iterator[Policy]:
    """Each policy, made when its turn comes (an FSRS policy's kept answers go with it)."""
    for retention in (DESIRED_RETENTION, 0.80, 0.95):
        yield Fsrs(retention)
    yield Sm2()
    yield Fixed()
    yield NoReview()


@dataclass(frozen=True)
class Outcome:
    """One policy's run: per learner, and per day (averaged over learners)."""

    name: str
    reviews: np.ndarray  # per learner: review answers (a lesson's first answers are not reviews)
    review_minutes: np.ndarray  # per learner: time spent on reviews
    recall_at: dict[int, np.ndarray]  # day → per learner: mean true recall of the questions learned by then
    kept_by_review: np.ndarray  # per learner, on the last day: questions recalled that would be lost without review
    recall_by_day: np.ndarray  # per day: mean true recall of the questions learned by then, over learners
    reviews_by_day: np.ndarray  # per day: reviews per learner
    seconds: float  # how long the run took
    scheduler_calls: int | None  # how often the bot's scheduler was asked (FSRS policies)


@dataclass(frozen=True)
class Setup:
    learners: int
    days: int
    seed: int
    lessons: int = LESSONS
    questions_per_lesson: int = QUESTIONS_PER_LESSON

    @property
    def questions(self) -> int:
        return self.lessons * self.questions_per_lesson


def population_for(setup: Setup) -> tuple[Population, np.ndarray]:
    """The learners and their days off: the same for every policy of a seed."""
    rng = np.random.default_rng([setup.seed, 0])
    population = memory.draw_population(rng, setup.learners, setup.questions)
    return population, memory.attendance(rng, population, setup.days)


def run(policy: Policy, setup: Setup, population: Population, present: np.ndarray,
        clock: Callable[[], float]) -> Outcome:
    """`policy` over `setup.days` days with these learners (`present`: L × days, who shows up when)."""
    started = clock()
    rng = np.random.default_rng([setup.seed, 1])
    learners, questions = population.learners, population.questions
    state = _State.new(learners, questions)
    policy.start(learners * questions)
    reviews = np.zeros(learners, dtype=np.int64)
    minutes = np.zeros(learners)
    recall_by_day = np.zeros(setup.days)
    reviews_by_day = np.zeros(setup.days)
    recall_at: dict[int, np.ndarray] = {}
    next_lesson = np.zeros(learners, dtype=np.int32)
    per_lesson = np.arange(setup.questions_per_lesson)
    for day in range(setup.days):
        here = present[:, day]
        due = np.flatnonzero((state.due <= day) & np.repeat(here, questions))
        if due.size:
            spent = state.answer(rng, policy, population, due, day, first=False)
            reviews += np.bincount(due // questions, minlength=learners)
            minutes += np.bincount(due // questions, weights=spent, minlength=learners) / 60
            reviews_by_day[day] = due.size / learners
        taking = np.flatnonzero(here & (next_lesson < setup.lessons))
        if taking.size:
            new = (taking[:, None] * questions + next_lesson[taking, None] * setup.questions_per_lesson
                   + per_lesson).ravel()
            state.answer(rng, policy, population, new, day, first=True)
            next_lesson[taking] += 1
        per_learner = state.recall_per_learner(day + 1)
        recall_by_day[day] = np.nanmean(per_learner)
        if day in CHECKPOINTS:
            recall_at[day] = per_learner
    return Outcome(policy.name, reviews, minutes, recall_at, state.kept_by_review(setup.days), recall_by_day,
                   reviews_by_day, clock() - started, getattr(policy, "asked", None))


@dataclass
class _State:
    """The truth about every card (learner × question, flattened): what the learner remembers, and when it is due."""

    due: np.ndarray
    last: np.ndarray  # the day of the last answer; -1: not learned yet
    stability: np.ndarray
    difficulty: np.ndarray
    first_stability: np.ndarray  # after the lesson's answer: what the memory would be with no review
    first_day: np.ndarray
    questions: int

    @classmethod
    def new(cls, learners: int, questions: int) -> _State:
        cards = learners * questions
        return cls(np.full(cards, NEVER, dtype=np.int64), np.full(cards, -1, dtype=np.int32), np.ones(cards),
                   np.ones(cards), np.ones(cards), np.full(cards, -1, dtype=np.int32), questions)

    def answer(self, rng: np.random.Generator, policy: Policy, population: Population, cards: np.ndarray, day: int,
               *, first: bool) -> np.ndarray:
        """The learners answer `cards` on `day`; returns the seconds each answer cost them."""
        learner, question = cards // self.questions, cards % self.questions
        typed = population.typed[question]
        if first:
            probability = np.full(len(cards), memory.LESSON_RECALL)
        else:
            probability = memory.recall(day - self.last[cards], self.stability[cards])
        answers = memory.answer(rng, probability, typed, population.pace[learner])
        truth = np.where(answers.recalled, answers.rating, memory.AGAIN).astype(np.int8)
        if first:
            stability, difficulty = memory.first_memory(truth, population.memory[learner],
                                                        population.difficulty.ravel()[cards])
            self.first_stability[cards], self.first_day[cards] = stability, day
        else:
            stability, difficulty = memory.next_memory(self.stability[cards], self.difficulty[cards], probability,
                                                       truth, population.memory[learner])
        self.stability[cards], self.difficulty[cards], self.last[cards] = stability, difficulty, day
        self.due[cards] = policy.answered(cards, day, answers.rating)
        return answers.study_seconds

    def recall_per_learner(self, day: int) -> np.ndarray:
        """Per learner: mean recall on `day` of the questions learned (NaN: none yet)."""
        learned = self.last >= 0
        probability = np.where(learned, memory.recall(day - self.last, self.stability), 0.0)
        shape = (-1, self.questions)
        count = learned.reshape(shape).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return probability.reshape(shape).sum(axis=1) / np.where(count, count, np.nan)

    def kept_by_review(self, day: int) -> np.ndarray:
        """Per learner: expected questions recalled on `day` beyond what the lesson alone would have left."""
        learned = self.last >= 0
        now = memory.recall(day - self.last, self.stability)
        alone = memory.recall(day - self.first_day, self.first_stability)
        return np.where(learned, now - alone, 0.0).reshape(-1, self.questions).sum(axis=1)


def simulate(setup: Setup, clock: Callable[[], float], *, progress: Callable[[str], None] = lambda line: None,
             ) -> list[Outcome]:
    """Every policy over the same learners."""
    population, present = population_for(setup)
    outcomes = []
    for policy in policies():
        outcomes.append(run(policy, setup, population, present, clock))
        progress(f"{policy.name}: {outcomes[-1].seconds:.1f} s")
    return outcomes
