"""The clock: APScheduler with a persistent job store, run only by the elected leader, each fire time run once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from scheduler.clock import EPOCH, JOB_FUNCTION, JOBS, Clock, Job, LeaderScheduler
from scheduler.context import JobContext
from scheduler.leader import Leadership
from storage.db import Database, make_sync_engine
from storage.scheduling import ClockRun, scheduler_jobs

UTC = timezone.utc


async def nothing(ctx: JobContext) -> None:
    return None


def every(seconds: int) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC)


async def runs(db: Database) -> list[ClockRun]:
    async with db.sessions() as session:
        return list(await session.scalars(select(ClockRun).order_by(ClockRun.id)))


async def stored_jobs(db: Database) -> dict[str, float | None]:
    async with db.sessions() as session:
        rows = await session.execute(select(scheduler_jobs.c.id, scheduler_jobs.c.next_run_time))
        return dict(rows.all())


async def wait_for(condition, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_the_real_jobs_are_stored_in_the_database(database_url):
    db = Database(database_url)
    clock = Clock(JobContext(db=db), owner="test-process")
    task = asyncio.create_task(clock.run())
    try:
        await wait_for(lambda: _has(db, {job.name for job in JOBS}))
        stored = await stored_jobs(db)
        prune = datetime.fromtimestamp(stored["prune"], UTC)
        assert (prune.hour, prune.minute) == (3, 17) and prune > datetime.now(UTC)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.dispose()


async def _has(db: Database, names: set[str]) -> bool:
    return set(await stored_jobs(db)) == names


async def test_each_fire_time_runs_once_is_journaled_and_the_clock_stops_when_cancelled(database_url):
    db = Database(database_url)
    clock = Clock(JobContext(db=db), owner="test-process", jobs=(Job("tick", nothing, every(1), 30),))
    task = asyncio.create_task(clock.run())
    try:
        await wait_for(lambda: _count_runs(db, 2))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    try:
        assert clock.scheduler is None
        done = await runs(db)
        await asyncio.sleep(1.2)
        assert len(await runs(db)) == len(done)  # nothing runs once the clock is stopped
        assert {(run.job, run.owner, run.outcome) for run in done} == {("tick", "test-process", "ok")}
        times = [run.scheduled_for for run in done]
        assert len(set(times)) == len(times) and all(t.microsecond == 0 for t in times)  # on the EPOCH grid
    finally:
        await db.dispose()


async def _count_runs(db: Database, n: int) -> bool:
    return len(await runs(db)) >= n


def store_jobs(url: str, *jobs: tuple[str, IntervalTrigger, int, datetime]) -> None:
    """Jobs as an earlier leader left them in the store: name, trigger, misfire grace, next run time."""
    engine = make_sync_engine(url)
    scheduler = LeaderScheduler(jobstores={"default": SQLAlchemyJobStore(engine=engine,
                                                                          tablename=scheduler_jobs.name)},
                                timezone=UTC)
    scheduler.start(paused=True)
    for name, trigger, grace, next_run in jobs:
        scheduler.add_job(JOB_FUNCTION, trigger=trigger, args=[name], id=name, name=name, misfire_grace_time=grace,
                          coalesce=True, max_instances=1, next_run_time=next_run)
    scheduler.shutdown(wait=False)
    engine.dispose()


async def test_a_new_leader_keeps_unchanged_jobs_runs_what_fell_due_once_and_skips_what_is_too_late(database_url):
    now = datetime.now(UTC).replace(microsecond=0)
    overdue, too_late = now - timedelta(seconds=20), now - timedelta(minutes=5)
    await asyncio.to_thread(
        store_jobs, database_url,
        ("tick", every(3600), 60, overdue),  # fell due while nobody led, within its grace: runs once, now
        ("late", every(3600), 60, too_late),  # more than its grace ago: skipped, journaled as missed
        ("changed", every(5), 60, now + timedelta(days=1)),  # defined differently now: replaced
        ("retired", every(5), 60, now + timedelta(days=1)),  # no longer defined: removed
    )
    db = Database(database_url)
    jobs = (Job("tick", nothing, every(3600), 60), Job("late", nothing, every(3600), 60),
            Job("changed", nothing, every(7200), 60))
    clock = Clock(JobContext(db=db), owner="new-leader", jobs=jobs)
    task = asyncio.create_task(clock.run())
    try:
        await wait_for(lambda: _count_runs(db, 2))
        await asyncio.sleep(0.5)
        assert sorted((run.job, run.scheduled_for, run.outcome) for run in await runs(db)) == [
            ("late", too_late, "missed"), ("tick", overdue, "ok"),
        ]
        stored = await stored_jobs(db)
        assert set(stored) == {"tick", "late", "changed"}
        changed = datetime.fromtimestamp(stored["changed"], UTC)
        assert changed < now + timedelta(hours=2) and changed.minute == 0  # the new two-hour grid, not tomorrow
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.dispose()


async def test_only_the_leaders_clock_runs_and_the_standby_takes_over(database_url):
    dbs = [Database(database_url), Database(database_url)]
    holds = []
    for db, name in zip(dbs, ("first", "second"), strict=True):
        clock = Clock(JobContext(db=db), owner=name, jobs=(Job("tick", nothing, every(1), 30),))
        leadership = Leadership(db, "clock-test", owner=name, check_seconds=0.1, lease_seconds=0.6)
        holds.append(asyncio.create_task(leadership.hold(clock.run)))
        await asyncio.sleep(0.3)
    try:
        await wait_for(lambda: _count_runs(dbs[0], 2))
        holds[0].cancel()  # the leader goes away
        await asyncio.gather(holds[0], return_exceptions=True)
        await wait_for(lambda: _owner_ran(dbs[0], "second", 2))
        done = await runs(dbs[0])
        owners = [run.owner for run in done]
        assert owners == sorted(owners, key=("first", "second").index)  # first, then only second
        assert Counter((run.job, run.scheduled_for) for run in done).most_common(1)[0][1] == 1
    finally:
        for hold in holds:
            hold.cancel()
        await asyncio.gather(*holds, return_exceptions=True)
        for db in dbs:
            await db.dispose()


async def _owner_ran(db: Database, owner: str, n: int) -> bool:
    return sum(run.owner == owner for run in await runs(db)) >= n
