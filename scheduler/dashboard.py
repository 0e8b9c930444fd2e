"""The dashboard's figures, counted again every 5 minutes (storage/dashboard.py says why a page reads a snapshot).
Its sign-in links and sessions that ended go with the nightly prune (storage.retention.SESSIONS_KEPT)."""

from __future__ import annotations

from scheduler.context import JobContext
from storage.dashboard import PAGES, compute


async def recount(ctx: JobContext) -> dict[str, float]:
    """Each page's figures in a transaction of its own; how long each took, in seconds."""
    took: dict[str, float] = {}
    for name in PAGES:
        async with ctx.db.transaction() as session:
            took[name] = round((await compute(session, name, ctx.now())).seconds, 3)
    return took
