"""Servers in child processes, free ports and scratch PostgreSQL databases: what the benches and the tests start.

A server is started with its output in a log file (`ServerProcess.log_path`), so a failure can show the end of it,
and is waited for until a health path answers: `wait_ready` from an event loop (the benches, with aiohttp),
`wait_ready_blocking` from plain code (the tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LESSONBOT = [sys.executable, "-m", "bot.cli"]  # `lessonbot` in this interpreter, whatever is on PATH
STARTUP_SECONDS = 60.0  # a cold start on a busy 2-core machine imports for several seconds
# Where this code is imported from: child processes import the same copy (a checkout or site-packages).
SOURCE_ROOT = Path(__file__).resolve().parents[1]


class ServerFailed(Exception):
    """A server process would not start or died; the message carries the end of its log."""


class DatabaseUnreachable(Exception):
    """The PostgreSQL server could not be reached, or would not create a database."""


@dataclass
class ServerProcess:
    label: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used (Linux /proc), None where that cannot be read."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def resident_kb(self) -> int | None:
        return resident_kb(self.process.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, http: Any, path: str) -> dict[str, Any]:
        """Until `path` answers 200 (its JSON body), polling with an aiohttp session; ServerFailed otherwise."""
        deadline = time.perf_counter() + STARTUP_SECONDS
        last_answer = "no answer"
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"{self.label} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                async with http.get(f"{self.url}{path}") as response:
                    body = await response.read()
                    if response.status == 200:
                        return json.loads(body)
                    last_answer = f"{path} answered {response.status} {body[:300].decode(errors='replace')}"
            except Exception as exc:
                last_answer = f"{path}: {type(exc).__name__}"  # not listening yet
            await asyncio.sleep(0.1)
        raise ServerFailed(
            f"{self.label} was not ready within {STARTUP_SECONDS:g} s ({last_answer}):\n{self.log_tail()}"
        )

    def wait_ready_blocking(self, path: str = "/readyz", timeout: float = 30.0) -> None:
        """Until `path` answers 200; ServerFailed (with the whole log) if the process exits or time runs out."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"{self.label} exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise ServerFailed(f"{self.label} not ready in {timeout:g} s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def resident_kb(pid: int | str = "self") -> int | None:
    """A process's resident memory (VmRSS, Linux /proc) in KB, None where that cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return None


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def free_port() -> int:
    """A local port no socket holds now, for a server started next. It is taken from below the kernel's range of
    ephemeral ports, where the system picks the port of every outgoing connection: a port from that range may be
    taken by one of them before the server binds it (on a busy machine running many tests, it was)."""
    low, _ = _ephemeral_ports()
    candidates = random.sample(range(max(1024, low - 12_000), low), 64) if low > 2048 else []
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # an unusual range: the kernel's own choice
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' ports (Linux; elsewhere its usual default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def child_environment(workdir: Path, database_url: str | None = None) -> dict[str, str]:
    """The server's settings: its own data folder and secret, quiet logs; this copy of the project importable."""
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(workdir / "var"),
        SECRET_KEY=secrets.token_hex(32),
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        PYTHONPATH=os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")])),
    )
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def start_process(
    label: str, argv: list[str], workdir: Path, env: dict[str, str], *, port: int | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start a server process on `port` (a free one by default), its output in a log file (of the work folder)."""
    port = port or free_port()
    log_path = log_path or workdir / f"{label.split()[0].lower()}.log"
    with log_path.open("wb") as log:
        # The work folder is the current directory, so a developer's .env does not change what is run.
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    return ServerProcess(label, process, f"http://127.0.0.1:{port}", log_path)


def upgrade_schema(workdir: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [*LESSONBOT, "db", "upgrade"],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0:
        raise ServerFailed(f"`lessonbot db upgrade` failed:\n{(done.stderr or done.stdout)[-2000:]}")


@contextmanager
def postgres_database(admin_url: str, *, prefix: str = "lessonbot_bench") -> Iterator[str]:
    """A fresh database on the server at admin_url, dropped afterwards; DatabaseUnreachable if there is none."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)

    def connect() -> psycopg.Connection:
        return psycopg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password,
            dbname=url.database or "postgres", autocommit=True, connect_timeout=3,
        )

    shown = url.render_as_string(hide_password=True)
    name = f"{prefix}_{secrets.token_hex(5)}"
    try:
        with connect() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(f"PostgreSQL is not reachable at {shown} ({first_line(exc)})") from None
    except psycopg.Error as exc:
        raise DatabaseUnreachable(f"could not create a database at {shown} ({first_line(exc)})") from None
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_for(kind: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """The URL of a fresh, empty database: a new SQLite file in `workdir` (kind "sqlite"), or a new PostgreSQL
    database on the server at `postgres_url`."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
    else:
        with postgres_database(postgres_url) as url:
            yield url
