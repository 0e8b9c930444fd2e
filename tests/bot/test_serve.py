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


def _serve(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), "DATA_DIR": str(tmp_path / "var"),
             "LOG_FORMAT": "text", **env},
        capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("host", ["not..a..host", "no-such-host.invalid", "ü..x"])
def test_a_host_it_cannot_listen_on_is_named_before_anything_starts(tmp_path, host):
    port = free_port()
    result = _serve(tmp_path, HOST=host, PORT=str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [said] = [line for line in result.stderr.splitlines() if line.startswith("Cannot serve")]
    assert said.startswith(f"Cannot serve on HOST={host}, PORT={port}: ")
    assert said.endswith("Set HOST to an address of this machine: 127.0.0.1 for it alone, 0.0.0.0 for all.")
    assert "serving on" not in result.stderr and "startup" not in result.stderr  # the app was not started


def test_a_port_in_use_is_named_before_anything_starts_and_keeps_its_exit_status(tmp_path):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        result = _serve(tmp_path, HOST="127.0.0.1", PORT=str(port))
    assert result.returncode == STARTUP_FAILURE and "Traceback" not in result.stderr
    assert (f"Cannot serve on HOST=127.0.0.1, PORT={port}: address already in use. Stop what listens there, or set "
            "PORT to a free port.") in result.stderr.splitlines()
    assert "serving on" not in result.stderr and "startup" not in result.stderr


def test_the_rasa_action_server_names_a_port_in_use_before_anything_starts(tmp_path):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli", "rasa-actions", "--port", str(port)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
                 "DATA_DIR": str(tmp_path / "var"), "LOG_FORMAT": "text"},
            capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert result.returncode == STARTUP_FAILURE and "Traceback" not in result.stderr
    assert (f"Cannot serve on HOST=127.0.0.1, --port={port}: address already in use. Stop what listens there, or "
            "set --port to a free port.") in result.stderr.splitlines()
    assert "Rasa actions on" not in result.stderr and "startup" not in result.stderr  # the app was not started


def test_the_dispatchers_metrics_port_in_use_is_named_as_serve_names_its_port(tmp_path):
    """`lessonbot dispatch --metrics-port` on a port in use: the option to change named, and serve's exit status."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli", "dispatch", "--metrics-port", str(port)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
                 "DATA_DIR": str(tmp_path / "var"), "LOG_FORMAT": "text"},
            capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert result.returncode == STARTUP_FAILURE and "Traceback" not in result.stderr
    assert (f"Cannot serve on HOST=127.0.0.1, --metrics-port={port}: address already in use. Stop what listens "
            "there, or set --metrics-port to a free port.") in result.stderr.splitlines(), result.stderr
    assert "dispatcher running" not in result.stderr
