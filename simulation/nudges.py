"""`lessonbot simulate nudges`: learners drift away; the bot's nudge planner and a template policy bring some back.

Hour by hour, every learner either keeps their habit (a lesson at their hour on most days, `ATTENDANCE`) or has
drifted away (after any lesson, with the chance `LAPSE`); someone away comes back on their own now and then
(`COMES_BACK_ALONE` a day). Each hour the bot's planner (`scheduler.nudges.decide`: the evening's streak saver, its
steps after one, three and seven days away, the farewell after fourteen, the twelve-hour gap, the learner's quiet
hours in their time zone) decides who is due a nudge, and the policy picks its template:
- `bandit`: the bot's choice (`scheduler.nudges.pick_template`: Thompson sampling over each template's record, the
  recency penalty), its records kept as the bot keeps them, a nudge counted once its reward window has passed;
- `uniform`: any template of the kind, at random;
- `best_fixed`: always the same template of each kind, the one that brought the most learners back when it was sent
  alone (`probes`, `best_in_hindsight`): the best fixed choice in hindsight.

The ground truth (`TRUTH`): each template brings a learner back within the reward window with its own chance the
first time that learner gets it, less after each time they got it before (it wears off), and less the longer they
have been away (`STEP_FACTOR`). Regret is, nudge by nudge, the chance the best template for that learner then had
minus the chance of the one sent. Review reminders are not simulated: these learners have no review questions; nor
are reminders to finish a lesson left part way: they take their lessons whole.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Protocol

import numpy as np

from dialogs.bandit import Arm
from dialogs.nudges import FAREWELL, INACTIVE, STREAK, templates
from scheduler.nudges import (
    LOOK_BACK,
    NUDGE_GAP,
    STEPS,
    STREAK_AT_RISK,
    STREAK_SAVER_HOURS,
    Nudge,
    Past,
    decide,
    pick_template,
)
from storage.learners import Learner, offset_name
from storage.models import User
from storage.scheduling import NUDGE_REWARD_WINDOW

# template → (chance it brings a learner back the first time they get it, what is left of it each time after)
TRUTH: dict[str, tuple[float, float]] = {
    "inactive-days": (0.10, 0.85),
    "inactive-five-minutes": (0.16, 0.45),  # the strongest at first, and it wears off fast
    "inactive-small-steps": (0.08, 0.95),
    "farewell-place-saved": (0.06, 0.8),
    "farewell-door-open": (0.09, 0.6),
    "streak-midnight": (0.30, 0.7),
    "streak-keep-alive": (0.24, 0.95),
}
STEP_FACTOR = (1.0, 0.75, 0.55, 1.0)  # by step: a day, three days, a week away; the farewell's chances are its own
KINDS = (INACTIVE, FAREWELL, STREAK)
ATTENDANCE = (9.0, 1.0)  # Beta parameters of the chance a learner keeping the habit takes the day's lesson
LAPSE = 0.04  # the chance of drifting away after a lesson
COMES_BACK_ALONE = 0.03  # a day, for someone away
ZONES = (-8, -5, -3, 0, 1, 2, 3, 5, 8, 9)  # learners' UTC offsets, in hours
QUIET_HOURS = (time(22, 0), time(7, 0))  # four learners in five keep these
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
FIRST_DAY = START.date()
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
SAVER_HOURS = tuple(moment.hour for moment in STREAK_SAVER_HOURS)
HISTORY = 6  # nudges kept per learner: enough for the planner's steps and the recency penalty
WINDOW_HOURS = NUDGE_REWARD_WINDOW / HOUR
STEP_HOURS = np.array([step / HOUR for step in STEPS])


def check_truth(truth: dict[str, tuple[float, float]] = TRUTH) -> None:
    """The ground truth names exactly the bot's templates (a renamed template must be given its truth)."""
    theirs = {template for kind in KINDS for template in templates(kind)}
    if theirs != set(truth):
        raise ValueError(f"simulation.nudges.TRUTH names {sorted(truth)}, the bot has {sorted(theirs)}")


class Policy(Protocol):
    name: str

    def pick(self, kind: str, nudge: Nudge, history: list[Past]) -> str:
        """The template of a nudge the planner decided; `history`: the learner's nudges, newest first."""

    def settled(self, kind: str, template: str, came_back: bool) -> None:
        """A nudge's reward window has passed: whether the learner came back within it."""


@dataclass
class Bandit:
    """The bot's template choice, its records updated as the bot's settling does."""

    seed: int
    name: str = "bandit"
    arms: dict[str, list[Arm]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.arms = {kind: [Arm(template) for template in templates(kind)] for kind in KINDS}

    def pick(self, kind: str, nudge: Nudge, history: list[Past]) -> str:
        return pick_template(self.arms[kind], nudge, history, self._rng)

    def settled(self, kind: str, template: str, came_back: bool) -> None:
        self.arms[kind] = [Arm(arm.template, arm.sent + 1, arm.came_back + int(came_back))
                           if arm.template == template else arm for arm in self.arms[kind]]


@dataclass
class Uniform:
    seed: int
    name: str = "uniform"

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self, kind: str, nudge: Nudge, history: list[Past]) -> str:
        return self._rng.choice(templates(kind))

    def settled(self, kind: str, template: str, came_back: bool) -> None:
        pass


@dataclass
class Fixed:
    chosen: dict[str, str]
    name: str = "fixed"

    def pick(self, kind: str, nudge: Nudge, history: list[Past]) -> str:
        return self.chosen[kind]

    def settled(self, kind: str, template: str, came_back: bool) -> None:
        pass


def fixed(chosen: dict[str, str]) -> Fixed:
    return Fixed(chosen, name=" + ".join(chosen[kind] for kind in KINDS))


def probes() -> list[Fixed]:
    """Fixed choices that send every template alone once: the i-th of each kind in the i-th (templates of different
    kinds meet learners at different moments, so they share runs)."""
    most = max(len(templates(kind)) for kind in KINDS)
    return [fixed({kind: templates(kind)[min(index, len(templates(kind)) - 1)] for kind in KINDS})
            for index in range(most)]


def best_in_hindsight(probed: list[Outcome]) -> Fixed:
    """Each kind's template that brought the most learners back when it was the only one sent."""
    return fixed({kind: max(templates(kind), key=lambda template: probed[templates(kind).index(template)]
                            .brought_back[template]) for kind in KINDS})


@dataclass(frozen=True)
class Outcome:
    name: str
    nudges: int
    returned: int  # nudges that brought their learner back (by the ground truth)
    counted_back: int  # nudges the bot counted as bringing the learner back (any return within the window)
    regret: float
    regret_by_day: np.ndarray  # cumulative
    sent: dict[str, int]  # by template
    brought_back: dict[str, int]  # by template: the returns its nudges brought about
    seconds: float

    @property
    def nudges_per_return(self) -> float | None:
        return self.nudges / self.returned if self.returned else None


@dataclass(frozen=True)
class Setup:
    learners: int
    days: int
    seed: int


@dataclass(frozen=True)
class Population:
    attendance: np.ndarray
    lesson_hour: np.ndarray  # UTC hour of each learner's lesson
    offset: np.ndarray  # hours ahead of UTC
    people: list[tuple[Learner, User]]


def population_for(setup: Setup) -> Population:
    rng = np.random.default_rng([setup.seed, 10])
    offsets = rng.choice(ZONES, setup.learners)
    local_hour = rng.integers(7, 21, setup.learners)
    quiet = rng.random(setup.learners) < 0.8
    people = []
    for index in range(setup.learners):
        learner = Learner(user_id=index + 1, streak_days=0, last_active_on=None,
                          lesson_time=time(int(local_hour[index])), lesson_days="1234567",
                          quiet_start=QUIET_HOURS[0] if quiet[index] else None,
                          quiet_end=QUIET_HOURS[1] if quiet[index] else None)
        people.append((learner, User(id=index + 1, timezone=offset_name(int(offsets[index]) * 60))))
    return Population(rng.beta(*ATTENDANCE, setup.learners), (local_hour - offsets) % 24, offsets, people)


def run(policy: Policy, setup: Setup, population: Population, clock: Callable[[], float]) -> Outcome:
    started = clock()
    behaviour = np.random.default_rng([setup.seed, 11])  # the same draws for every policy
    responses = np.random.default_rng([setup.seed, 12])
    learners = setup.learners
    names = list(TRUTH)
    first_chance = np.array([TRUTH[name][0] for name in names])
    wear = np.array([TRUTH[name][1] for name in names])
    column = {name: index for index, name in enumerate(names)}
    of_kind = {kind: [column[template] for template in templates(kind)] for kind in KINDS}
    received = np.zeros((learners, len(names)), dtype=np.int32)

    keeping = np.ones(learners, dtype=bool)
    last_active = np.zeros(learners)  # hours since START
    steps_done = np.zeros(learners, dtype=np.int32)  # nudges of this absence (by step: the next one due)
    last_nudge = np.full(learners, -1e9)
    since_nudge = np.full(learners, np.inf)  # the first activity since the last nudge
    streak = np.zeros(learners, dtype=np.int32)  # as storage.learners.record_activity counts it
    last_day = np.full(learners, -10, dtype=np.int64)  # local day (0: START's date) of the last activity
    histories: list[list[Past]] = [[] for _ in range(learners)]
    pending: deque[tuple[float, int, str, str]] = deque()  # (sent at, learner, kind, template)
    alone = 1 - (1 - COMES_BACK_ALONE) ** (1 / 24)
    nudges = returned = counted = 0
    regret = 0.0
    regret_by_day = np.zeros(setup.days)
    sent = dict.fromkeys(names, 0)
    brought_back = dict.fromkeys(names, 0)

    def active(who: np.ndarray, at: np.ndarray | float) -> None:
        last_active[who] = at
        steps_done[who] = 0
        since_nudge[who] = np.minimum(since_nudge[who], at)
        day = np.floor_divide(at + population.offset[who], 24).astype(np.int64)
        streak[who] = np.where(day == last_day[who], streak[who],
                               np.where(day == last_day[who] + 1, streak[who] + 1, 1))
        last_day[who] = day

    for hour in range(setup.days * 24):
        lesson = keeping & (population.lesson_hour == hour % 24) & (behaviour.random(learners) < population.attendance)
        drift = behaviour.random(learners) < LAPSE
        back = ~keeping & (behaviour.random(learners) < alone)
        active(lesson | back, float(hour))
        keeping = (keeping & ~(lesson & drift)) | back

        while pending and pending[0][0] + WINDOW_HOURS <= hour:
            at, who, kind, template = pending.popleft()
            came_back = bool(since_nudge[who] <= at + WINDOW_HOURS)
            counted += came_back
            policy.settled(kind, template, came_back)

        away = hour - last_active
        local = hour + population.offset
        inactive = ((away >= STEP_HOURS[0]) & (away < LOOK_BACK / HOUR) & (steps_done < len(STEPS))
                    & (away >= STEP_HOURS[np.minimum(steps_done, len(STEPS) - 1)]))
        at_risk = ((streak >= STREAK_AT_RISK) & (last_day == local // 24 - 1)
                   & (local % 24 >= SAVER_HOURS[0]) & (local % 24 < SAVER_HOURS[1]))
        due = np.flatnonzero((inactive | at_risk) & (hour - last_nudge >= NUDGE_GAP / HOUR))
        now = START + hour * HOUR
        for who in due.tolist():
            learner, user = population.people[who]
            user.last_active_at = START + float(last_active[who]) * HOUR
            learner.streak_days, learner.last_active_on = int(streak[who]), FIRST_DAY + int(last_day[who]) * DAY
            nudge = decide(learner, user, histories[who], now)
            if nudge is None:
                continue
            template = policy.pick(nudge.kind, nudge, histories[who])
            histories[who] = [Past(nudge.kind, nudge.step, template, now), *histories[who][:HISTORY - 1]]
            last_nudge[who], since_nudge[who] = hour, np.inf
            if nudge.kind != STREAK:
                steps_done[who] = nudge.step + 1
            kinds = of_kind[nudge.kind]
            chances = first_chance[kinds] * wear[kinds] ** received[who, kinds] * STEP_FACTOR[nudge.step]
            chance = chances[kinds.index(column[template])]
            regret += float(chances.max() - chance)
            received[who, column[template]] += 1
            sent[template] += 1
            nudges += 1
            pending.append((float(hour), who, nudge.kind, template))
            if responses.random() < chance:
                returned += 1
                brought_back[template] += 1
                keeping[who] = True
                active(np.array([who]), hour + responses.random() * WINDOW_HOURS)
        regret_by_day[hour // 24] = regret
    return Outcome(policy.name, nudges, returned, counted, regret, regret_by_day, sent, brought_back,
                   clock() - started)


def simulate(setup: Setup, clock: Callable[[], float], *, progress: Callable[[str], None] = lambda line: None,
             ) -> tuple[list[Outcome], Outcome]:
    """The bandit and uniform choice, and the best fixed choice in hindsight, over the same learners."""
    check_truth()
    population = population_for(setup)

    def measured(policy: Policy) -> Outcome:
        outcome = run(policy, setup, population, clock)
        progress(f"{policy.name}: {outcome.seconds:.1f} s")
        return outcome

    outcomes = [measured(Bandit(setup.seed)), measured(Uniform(setup.seed))]
    probed = [measured(probe) for probe in probes()]
    best = best_in_hindsight(probed)
    return outcomes, next((outcome for outcome in probed if outcome.name == best.name), None) or measured(best)
