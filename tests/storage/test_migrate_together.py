"""Two processes that upgrade the same fresh database at once (the embedded SQLite file migrates itself on first use,
so a `serve` and an admin command started together both do): one upgrades, the other waits for it and finds
nothing left to do. Each migration commits on its own (storage/migrations/env.py), so without that wait the second
would apply a migration the first had just applied, and fail."""

from __future__ import annotations

import multiprocessing

from storage import migrate


def _upgrade(url: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    migrate.upgrade(url)


def test_two_upgrades_at_once_leave_the_database_at_its_heads(unmigrated_url):
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    upgrades = [context.Process(target=_upgrade, args=(unmigrated_url, start)) for _ in range(3)]
    for process in upgrades:
        process.start()
    start.set()
    for process in upgrades:
        process.join(timeout=120)
    assert [process.exitcode for process in upgrades] == [0, 0, 0]
    assert migrate.applied_revisions(unmigrated_url) == migrate.head_revisions()
