"""What every bench's output shares: the machine it ran on, progress lines, --json, aligned tables and figures."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="machine-readable results: on stdout instead of the table, or written to PATH as well",
    )


def print_report(report: dict[str, Any], args: argparse.Namespace, render: Callable[[dict[str, Any]], str]) -> None:
    """The table on stdout (and the JSON in --json PATH), or with a bare --json the JSON alone on stdout."""
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def progress(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def run_event_loop(coroutine: Any) -> Any:
    """Run on uvloop when it is installed: the load generator costs less CPU there, leaving more to the server."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)


def machine() -> dict[str, Any]:
    import aiohttp
    import uvicorn

    from bench.echo import uvicorn_implementations

    cpu_model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    client_loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        **uvicorn_implementations(),
        "client": f"aiohttp {aiohttp.__version__} on {client_loop}",
    }


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..100) of values, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned text columns: the first left-aligned, the figures right-aligned."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return [
        "  ".join(
            [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=False)]
        ).rstrip()
        for row in [header, *rows]
    ]


def number(value: float | None, decimals: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{decimals}f}"
