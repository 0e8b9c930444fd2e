"""The clock: APScheduler with its jobs in the project database, run only by the elected leader.

APScheduler 3 runs a job once per process that shares its job store, so the clock is leader work (`Clock.run`,
which the wiring adds to `Lessonbot.leader_work`; scheduler/leader.py): it starts when this process is elected and
is shut down the moment leadership is lost, so at most one process runs it. Behind that, every job is idempotent
(each send is decided under a unique key), which covers the seconds in which a cut-off old leader has not yet
noticed.

The job store is APScheduler's SQLAlchemyJobStore on the project database (table `scheduler_jobs`). On start the
leader makes the stored jobs match JOBS: a job whose definition is unchanged keeps its stored next run time, so
after a failover a run that fell due while nobody led runs once at takeover (coalesced) if it is within the job's
misfire grace, and is otherwise skipped (and journaled as missed); a changed or new job is (re)created with
replace_existing; a job no longer defined is removed. Interval triggers start at a fixed EPOCH, so every process
computes the same fire times.

Threads: APScheduler's own loop and its synchronous job store run in APScheduler's thread (BackgroundScheduler),
never on the event loop — a blocking SQLite write there could otherwise wait on a transaction that the blocked loop
itself has to finish. The jobs are coroutines, run on the leader's event loop (`LoopExecutor`).

Every run is journaled in `clock_runs` with the fire time it was for, the process that ran it and its outcome.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job as StoredJob
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dialogs.personal import sweep_files
from scheduler import broadcast, dashboard, nudges, planner, teams
from scheduler.context import JobContext
from storage.broadcasts import FAN_OUT
from storage.db import make_sync_engine
from storage.models import utcnow
from storage.retention import PRUNE_BATCH, prune_history
from storage.scheduling import ClockRun, scheduler_jobs

log = logging.getLogger(__name__)

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


async def prune(ctx: JobContext, *, batch: int = PRUNE_BATCH) -> dict[str, int]:
    """History nothing reads any more (`batch` rows at most a transaction), the messages and replies past their days
    (`JobContext.message_days`), the model's answers past theirs (`JobContext.answers_kept`), and the personal files
    no row names (dialogs.personal.sweep_files)."""
    pruned = await prune_history(ctx.db, ctx.now(), batch=batch, message_days=ctx.message_days,
                                 answers_kept=ctx.answers_kept)
    if ctx.data_dir is not None:
        async with ctx.db.sessions() as session:
            swept = await sweep_files(session, ctx.data_dir, now=ctx.now())
        pruned.update({f"{kind} files": count for kind, count in swept.items()})
    return pruned


@dataclass(frozen=True)
class Job:
    """A recurring job: what it runs, when, and how late a run may still start (else it is skipped)."""

    name: str
    run: Callable[[JobContext], Awaitable[object]]
    trigger: BaseTrigger
    misfire_grace_seconds: int


JOBS: tuple[Job, ...] = (
    # The planner walks behind a durable cursor: a late run makes up the whole gap, so late runs are welcome.
    Job("lessons", planner.plan_lessons, IntervalTrigger(minutes=1, start_date=EPOCH, timezone=timezone.utc), 3600),
    Job("team-lessons", teams.post_team_lessons,
        IntervalTrigger(minutes=1, start_date=EPOCH, timezone=timezone.utc), 3600),
    Job("team-members", teams.sync_team_members,
        IntervalTrigger(minutes=1, start_date=EPOCH, timezone=timezone.utc), 600),
    Job("nudges", nudges.sweep, IntervalTrigger(minutes=15, start_date=EPOCH, timezone=timezone.utc), 3600),
    Job("nudge-outcomes", nudges.settle, IntervalTrigger(minutes=5, start_date=EPOCH, timezone=timezone.utc), 3600),
    # The dashboard's counts: a missed run is simply the next one.
    Job("dashboard", dashboard.recount, IntervalTrigger(minutes=5, start_date=EPOCH, timezone=timezone.utc), 240),
    # Frequent and cheap: a missed run is simply the next one.
    # A broadcast confirmed starts it at once (`Clock.start_now`): the interval is for the batches after the first.
    Job(FAN_OUT, broadcast.fan_out, IntervalTrigger(seconds=2, start_date=EPOCH, timezone=timezone.utc), 30),
    # Nightly; after a long outage it may wait for the next night.
    Job("prune", prune, CronTrigger(hour=3, minute=17, timezone=timezone.utc), 6 * 3600),
)

JOB_FUNCTION = "scheduler.clock:run_job"  # what the job store keeps: a name, not the function itself


async def run_job(name: str) -> object:
    """The function every stored job names. A clock runs its jobs itself (`LoopExecutor`), so this is only the
    store's reference; called any other way (another scheduler on the same table), it refuses."""
    raise RuntimeError(f"job {name!r} fired outside a Lessonbot clock; only the elected leader runs the jobs")


class Clock:
    """The jobs of JOBS on APScheduler, run while `run` (leader work) runs.

    Everything it needs is in `context`: the database, the way to wake the dispatcher, the generated files' folder,
    whether a WhatsApp template is configured. `owner` names this process in the journal (`clock_runs`).
    """

    def __init__(self, context: JobContext, *, owner: str, jobs: tuple[Job, ...] = JOBS) -> None:
        self.context = context
        self.owner = owner[:120]
        self.jobs = {job.name: job for job in jobs}
        self.scheduler: LeaderScheduler | None = None
        self._starting: set[asyncio.Future[None]] = set()

    @property
    def running(self) -> bool:
        """Started and not yet stopped: this process leads."""
        return self.scheduler is not None and self.scheduler.running

    def start_now(self, name: str) -> None:
        """Run job `name` now rather than at its next fire time (a broadcast just confirmed goes out at once), the way
        its fire times run: through APScheduler, journaled, one run at a time (with a run under way this one is
        skipped; the next fire time comes within the job's interval). Its next runs follow at its interval from this
        one. Nothing while this clock does not run (this process does not lead)."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running or name not in self.jobs:
            return
        # The job store is written synchronously: in a thread, like APScheduler's own writes.
        starting = asyncio.ensure_future(asyncio.to_thread(_run_now, scheduler, name))
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)

    async def run(self) -> None:
        """Leader work: start APScheduler, keep it until cancelled (leadership lost, shutdown), then stop it."""
        loop = asyncio.get_running_loop()
        # APScheduler's job store is synchronous (SQLAlchemyJobStore takes a sync Engine, used from its own thread):
        # it gets its own engine on the same database, the one the project's async Database cannot stand in for.
        engine = make_sync_engine(self.context.db.url, immediate=False)
        scheduler = LeaderScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=scheduler_jobs.name)},
            executors={"default": LoopExecutor(loop, self)},
            timezone=timezone.utc,
        )
        self.scheduler = scheduler
        try:
            await asyncio.to_thread(scheduler.start, paused=True)
            await asyncio.to_thread(self._install_jobs, scheduler)
            scheduler.resume()
            log.info("clock started: %s", ", ".join(self.jobs))
            await asyncio.Event().wait()
        finally:
            if scheduler.running:
                await asyncio.to_thread(scheduler.shutdown, wait=False)  # cancels the runs in progress
            await asyncio.to_thread(engine.dispose)
            self.scheduler = None
            log.info("clock stopped")

    def _install_jobs(self, scheduler: LeaderScheduler) -> None:
        """Make the stored jobs match `self.jobs`, keeping the stored next run time of every unchanged one."""
        for stored in scheduler.get_jobs():
            if stored.id not in self.jobs:
                scheduler.remove_job(stored.id)
        for job in self.jobs.values():
            stored = scheduler.get_job(job.name)
            if stored is not None and _unchanged(stored, job):
                continue
            scheduler.add_job(
                JOB_FUNCTION, trigger=job.trigger, args=[job.name], id=job.name, name=job.name,
                replace_existing=True, misfire_grace_time=job.misfire_grace_seconds, coalesce=True, max_instances=1,
            )

    async def run_job(self, name: str) -> object:
        return await self.jobs[name].run(self.context)

    async def run_due(self, stored: StoredJob, run_times: list[datetime]) -> list[JobExecutionEvent]:
        """Run a job for its due fire times (one, coalesced), skipping those later than its misfire grace."""
        events = []
        for run_time in run_times:
            late = utcnow() - run_time
            grace = stored.misfire_grace_time
            if grace is not None and late > timedelta(seconds=grace):
                log.warning("job %s missed its run at %s (%s late)", stored.id, run_time.isoformat(), late)
                await self._journal(stored.id, run_time, "missed")
                events.append(JobExecutionEvent(EVENT_JOB_MISSED, stored.id, stored._jobstore_alias, run_time))
                continue
            try:
                result = await self.run_job(*stored.args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("job %s failed", stored.id, extra={"scheduled_for": run_time.isoformat()})
                await self._journal(stored.id, run_time, "error", f"{type(exc).__name__}: {exc}")
                events.append(JobExecutionEvent(EVENT_JOB_ERROR, stored.id, stored._jobstore_alias, run_time,
                                                exception=exc))
            else:
                await self._journal(stored.id, run_time, "ok")
                events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, stored.id, stored._jobstore_alias, run_time,
                                                retval=result))
        return events

    async def _journal(self, job: str, scheduled_for: datetime, outcome: str, error: str | None = None) -> None:
        try:
            async with self.context.db.transaction() as session:
                session.add(ClockRun(job=job, scheduled_for=scheduled_for, owner=self.owner, finished_at=utcnow(),
                                     outcome=outcome, error=error[:2000] if error else None))
        except Exception as exc:
            log.warning("could not journal a job run", extra={"job": job, "error": str(exc)})


def _run_now(scheduler: LeaderScheduler, name: str) -> None:
    try:
        scheduler.modify_job(name, next_run_time=utcnow())
    except Exception as exc:  # not installed yet, or the clock stopped meanwhile: it runs at its next fire time
        log.info("job %s could not be started now", name, extra={"error": str(exc)[:300]})


def _unchanged(stored: StoredJob, job: Job) -> bool:
    return (
        stored.func_ref == JOB_FUNCTION
        and tuple(stored.args) == (job.name,)
        and repr(stored.trigger) == repr(job.trigger)
        and stored.misfire_grace_time == job.misfire_grace_seconds
        and stored.coalesce
        and stored.max_instances == 1
    )


class LeaderScheduler(BackgroundScheduler):
    """APScheduler's background scheduler, except that once shut down it looks at no job again.

    APScheduler 3 wakes its thread on shutdown and processes due jobs one last time; here that would start a job
    (or move its next run time on) after leadership was lost, when the new leader may already run it.
    """

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()


class LoopExecutor(BaseExecutor):
    """Runs each job on the leader's event loop; called from APScheduler's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        super().__init__()
        self._loop = loop
        self._clock = clock
        self._pending: set[Future[list[JobExecutionEvent]]] = set()
        self._pending_lock = threading.Lock()

    def shutdown(self, wait: bool = True) -> None:
        with self._pending_lock:
            pending = list(self._pending)
            self._pending.clear()
        # Outside the lock: cancel() runs `finished` at once, in this thread, and it takes the lock too.
        for future in pending:
            future.cancel()

    def _do_submit_job(self, job: StoredJob, run_times: list[datetime]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._clock.run_due(job, run_times), self._loop)
        with self._pending_lock:
            self._pending.add(future)

        def finished(done: Future[list[JobExecutionEvent]]) -> None:
            with self._pending_lock:
                self._pending.discard(done)
            if done.cancelled():
                self._run_job_success(job.id, [])  # only frees the instance slot
                return
            error = done.exception()
            if error is not None:
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, done.result())

        future.add_done_callback(finished)
