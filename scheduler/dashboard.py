"""The dashboard's figures, counted again every 5 minutes (storage/dashboard.py says why a page reads a snapshot),
and the dashboard's sign-in links and sessions that ended, deleted."""

from __future__ import annotations

from datetime import timedelta

from scheduler.context import JobContext
from storage.admins import prune_sessions
from storage.dashboard import PAGES, compute

SESSIONS_KEPT = timedelta(days=1)  # a sign-in that ended stays this long (its audit line stays for good)


async def recount(ctx: JobContext) -> dict[str, float]:
    """Each page's figures in a transaction of its own; how long each took, in seconds."""
    took: dict[str, float] = {}
    for name in PAGES:
        async with ctx.db.transaction() as session:
            took[name] = round((await compute(session, name, ctx.now())).seconds, 3)
    async with ctx.db.transaction() as session:
        await prune_sessions(session, before=ctx.now() - SESSIONS_KEPT)
    return took
