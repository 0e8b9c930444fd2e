"""`lessonbot bench round-trips`: what the statement layer's second look at a waiting socket costs a round trip.

Each round trip of a prepared statement (storage/postgres_statements.py) arms a timer that looks at its socket again
every `RECHECK_SECONDS` while no reply has come (uvloop stops watching a socket at its first error, without a word to
the reader). Here one connection (or --connections of them at once) sends `SELECT 1` --trips times a round, through
the statement layer, on uvloop as `lessonbot serve` runs (--loop asyncio for asyncio's own); the rounds alternate
between the two sides, with the looks and without (A B B A, so neither side always goes first), --rounds of each,
and each side's figures are the medians of its rounds: the wall time and this process's CPU time a round trip (the
server's is not counted). The machine is shared: only the two sides of one run compare, and the spread of the
rounds says how much to trust the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.processes import DEFAULT_POSTGRES_ADMIN_URL
from bench.report import add_json_option, machine, print_report, progress, table
from bot.cli.numbers import whole

HELP = "CPU and time of a statement's round trip with and without the second look at its socket (PostgreSQL)"
DESCRIPTION = __doc__
SIDES = ("with the looks", "without")
_SELECT_1 = (b"SELECT 1", (), True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trips", type=whole(), default=5_000, help="round trips a round (default 5,000)")
    parser.add_argument("--rounds", type=whole(), default=10, help="rounds of each side (default 10)")
    parser.add_argument("--connections", type=whole(), default=1,
                        help="connections sending at once, each its share of the trips (default 1)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the event loop (uvloop)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES_ADMIN_URL,
                        help="a PostgreSQL server to send `SELECT 1` to (no table is touched)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            report = runner.run(measure(args.postgres, trips=args.trips, rounds=args.rounds,
                                        connections=args.connections))
    except psycopg.OperationalError as exc:
        progress(f"cannot reach PostgreSQL: {exc}")
        return 2
    report["loop"] = args.loop
    print_report(report, args, render)
    return 0


async def measure(url: str, *, trips: int, rounds: int, connections: int) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    from storage import postgres_statements
    from storage.notices import conninfo

    opened = [await postgres_statements.BoundedAsyncConnection.connect(conninfo(url), autocommit=True)
              for _ in range(connections)]
    each = max(1, trips // connections)
    kept = postgres_statements.RECHECK_SECONDS
    figures: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
    load_before = os.getloadavg()
    try:
        await _round(opened, 50)  # (each statement prepared, the connections warm)
        order = [side for number in range(rounds) for side in (SIDES if number % 2 == 0 else SIDES[::-1])]
        for number, side in enumerate(order):
            postgres_statements.RECHECK_SECONDS = kept if side == SIDES[0] else None
            wall, cpu = await _round(opened, each)
            figures[side].append((wall / (each * connections), cpu / (each * connections)))
            if number % 2:
                progress(f"round {number // 2 + 1} of {rounds}")
    finally:
        postgres_statements.RECHECK_SECONDS = kept
        for connection in opened:
            await connection.close()
    sides: list[dict[str, Any]] = []
    for side in SIDES:
        walls = [wall * 1e6 for wall, _ in figures[side]]
        cpus = [cpu * 1e6 for _, cpu in figures[side]]
        sides.append({"side": side, "wall_us": statistics.median(walls), "cpu_us": statistics.median(cpus),
                      "cpu_us_min": min(cpus), "cpu_us_max": max(cpus), "rounds": len(cpus)})
    with_looks, without = sides
    return {
        "server": make_url(url).render_as_string(hide_password=True),
        "trips_a_round": each * connections,
        "connections": connections,
        "recheck_seconds": kept,
        "sides": sides,
        "cpu_difference_us": with_looks["cpu_us"] - without["cpu_us"],
        "cpu_difference_percent": 100 * (with_looks["cpu_us"] / without["cpu_us"] - 1),
        "load_average_before": [round(value, 2) for value in load_before],
        "machine": machine(),
    }


async def _round(connections: list[Any], each: int) -> tuple[float, float]:
    """Wall and CPU seconds of `each` round trips on every connection at once."""
    from storage import postgres_statements

    async def trips(connection: Any) -> None:
        for _ in range(each):
            await postgres_statements.execute(connection, _SELECT_1)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(trips(connection) for connection in connections))
    return time.perf_counter() - wall, time.process_time() - cpu


def render(report: dict[str, Any]) -> str:
    lines = [f"`SELECT 1` through the statement layer on {report['loop']}: {report['trips_a_round']:,} round trips a "
             f"round on {report['connections']} connection(s), medians of {report['sides'][0]['rounds']} rounds a side",
             ""]
    lines += table(("side", "wall µs/trip", "CPU µs/trip", "CPU min", "CPU max"), [
        (row["side"], f"{row['wall_us']:.1f}", f"{row['cpu_us']:.2f}", f"{row['cpu_us_min']:.2f}",
         f"{row['cpu_us_max']:.2f}") for row in report["sides"]])
    lines.append("")
    lines.append(f"the looks: {report['cpu_difference_us']:+.2f} µs of CPU a round trip "
                 f"({report['cpu_difference_percent']:+.1f} %)")
    found = report["machine"]
    lines.append(f"machine: {found['cpu']}, {found['cores']} cores; load average {report['load_average_before']} "
                 f"before, {found['load_average']} after")
    return "\n".join(lines)
