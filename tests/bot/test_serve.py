"""`lessonbot serve`'s process set-up, and a HOST or PORT it cannot listen on said in one line before it starts."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from uvicorn.server import STARTUP_FAILURE

from bench.processes import free_port
from bot.cli.serve import keep_startup_objects_out_of_collections


def test_what_start_up_made_is_left_out_of_garbage_collections():
    made_at_start_up = [object() for _ in range(3)], {"a": [1, 2]}
    try:
        keep_startup_objects_out_of_collections()
        assert gc.get_freeze_count() > 0
        assert not any(each is made_at_start_up for each in gc.get_objects())  # frozen: in no generation
    finally:
        gc.unfreeze()


def _lessonbot(tmp_path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *argv],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), "DATA_DIR": str(tmp_path / "var"),
             "LOG_FORMAT": "text", **env},
        capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("host", ["not..a..host", "no-such-host.invalid", "ü..x"])
def test_a_host_it_cannot_listen_on_is_named_before_anything_starts(tmp_path, host):
    port = free_port()
    result = _lessonbot(tmp_path, "serve", HOST=host, PORT=str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [said] = [line for line in result.stderr.splitlines() if line.startswith("Cannot serve")]
    assert said.startswith(f"Cannot serve on HOST={host}, PORT={port}: ")
    assert said.endswith("Set HOST to an address of this machine: 127.0.0.1 for it alone, 0.0.0.0 for all.")
    assert "serving on" not in result.stderr and "startup" not in result.stderr  # the app was not started


# Each command that listens on a port: how the port is given (a setting, or an option of the command), and what it
# logs once it has started.
@pytest.mark.parametrize(("command", "given", "started"), [
    ("serve", "PORT", "serving on"),
    ("rasa-actions", "--port", "Rasa actions on"),
    ("dispatch", "--metrics-port", "dispatcher running"),  # (its metrics port)
])
def test_a_port_in_use_is_named_before_anything_starts_and_keeps_serves_exit_status(tmp_path, command, given, started):
    port = free_port()
    argv, env = ([], {"HOST": "127.0.0.1", given: str(port)}) if given.isupper() else ([given, str(port)], {})
    with socket.create_server(("127.0.0.1", port)):
        result = _lessonbot(tmp_path, command, *argv, **env)
    assert result.returncode == STARTUP_FAILURE and "Traceback" not in result.stderr
    assert (f"Cannot serve on HOST=127.0.0.1, {given}={port}: address already in use. Stop what listens there, or "
            f"set {given} to a free port.") in result.stderr.splitlines(), result.stderr
    assert started not in result.stderr and "startup" not in result.stderr  # the app was not started
