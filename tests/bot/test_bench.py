"""`lessonbot bench pipeline`: the real command, with tiny numbers, starting real servers in their own processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.processes import child_environment, start_process, upgrade_schema
from bench.report import percentile
from bot.cli import build_parser
from bot.config import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/postgres"


def lessonbot(*argv: str) -> int:
    """Run a command as `lessonbot` does, in this process (without reconfiguring its logging)."""
    args = build_parser().parse_args(list(argv))
    return args.func(load_settings(_env_file=None), args)


@pytest.mark.slow
def test_echo_and_sqlite_rows_with_sane_figures_and_an_unreachable_postgres_skipped(tmp_path: Path) -> None:
    results_file = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [
            sys.executable, "-m", "bot.cli", "bench", "pipeline",
            "--conversations", "3", "--messages", "3", "--warmup", "1", "--poll-ms", "10",
            "--postgres-url", UNREACHABLE_POSTGRES, "--json", str(results_file),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    lines = done.stdout.splitlines()
    header = next(number for number, line in enumerate(lines) if line.startswith("target "))
    table = lines[header + 1 : lines.index("", header)]
    rows = {line.split("  ")[0]: line.split() for line in table}
    assert set(rows) == {"echo (ceiling)", "SQLite", "PostgreSQL"}
    assert rows["echo (ceiling)"][-4:] == ["n/a", "n/a", "n/a", "0"]  # no replies from the echo, no errors
    assert rows["SQLite"][-1] == "0"
    assert rows["PostgreSQL"][1] == "skipped"
    assert any("not reachable" in line and "--postgres-url" in line for line in lines[header:])
    assert any(line.startswith("machine: ") for line in lines[:header])

    report = json.loads(results_file.read_text())
    assert report["machine"]["loop"] in ("uvloop", "asyncio") and report["machine"]["http"] in ("httptools", "h11")
    echo, sqlite, postgresql = report["results"]
    measured = 3 * (3 - 1)  # conversations x (messages - warm-up)
    assert (echo["target"], echo["status"], echo["messages"], echo["error_count"]) == ("echo", "ok", measured, 0)
    assert echo["messages_per_s"] > 0 and echo["replies"] is None
    assert (sqlite["target"], sqlite["status"], sqlite["error_count"]) == ("sqlite", "ok", 0)
    assert sqlite["messages"] == sqlite["replies"] == measured
    assert sqlite["messages_per_s"] > 0 and sqlite["replies_per_s"] > 0
    assert 0 < sqlite["ack_ms"]["p50"] <= sqlite["ack_ms"]["p99"]
    # Replies come on the page's event stream, which may even outrun the POST's answer: no floor but zero.
    assert 0 < sqlite["reply_ms"]["p50"] <= sqlite["reply_ms"]["p99"]
    assert (postgresql["target"], postgresql["status"]) == ("postgresql", "skipped")


@pytest.mark.slow
def test_intake_only_measures_acknowledgements_of_a_server_that_only_records(tmp_path: Path) -> None:
    """`--intake-only`: back to back, to a `serve --no-worker` that nobody processes for: no replies awaited, and the
    rate taken in printed as a share of the echo ceiling's beside its target."""
    results_file = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [
            sys.executable, "-m", "bot.cli", "bench", "pipeline", "--intake-only", "--targets", "echo,sqlite",
            "--conversations", "3", "--messages", "3", "--warmup", "1", "--json", str(results_file),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "servers that only record and acknowledge (--intake-only)" in done.stdout
    assert any(line.startswith("taken in, as a share of the echo ceiling's requests/s: SQLite ")
               and line.endswith("(target 40%)") for line in done.stdout.splitlines())
    report = json.loads(results_file.read_text())
    assert report["options"]["intake_only"] and not report["options"]["wait_for_reply"]
    echo, sqlite = report["results"]
    assert (sqlite["status"], sqlite["messages"], sqlite["error_count"], sqlite["replies"]) == ("ok", 3 * 2, 0, None)
    assert sqlite["messages_per_s"] > 0 and echo["messages_per_s"] > 0


@pytest.mark.slow
def test_a_server_that_refuses_event_streams_ends_the_run_and_names_the_setting(tmp_path: Path) -> None:
    """`--url` at a server with the web chat's default caps: one address may hold fewer event streams than the
    bench opens. The refusal (429) ends the run at once (a learner without its stream never sees its reply, and the
    others wait for it at the start line) and says which setting to raise."""
    env = child_environment(tmp_path, f"sqlite:///{tmp_path / 'bench.db'}")
    env["WEB_CHAT_STREAMS_PER_ADDRESS"] = "1"
    upgrade_schema(tmp_path, env)
    server = start_process("Lessonbot", [sys.executable, "-m", "bot.cli", "serve"], tmp_path, env)
    try:
        server.wait_ready_blocking("/readyz")
        results_file = tmp_path / "results.json"
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "bench", "pipeline", "--url", server.url, "--conversations", "2",
             "--messages", "2", "--warmup", "1", "--json", str(results_file)],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(results_file.read_text())["results"]
    refused = {kind: count for kind, count in result["errors"].items() if "429" in kind}
    assert refused and all("WEB_CHAT_STREAMS_PER_ADDRESS=2" in kind and "--poll" in kind for kind in refused)
    assert sum(refused.values()) == 1  # the first refusal ends it
    assert result["measured_s"] is None or result["measured_s"] >= 0
    assert "WEB_CHAT_STREAMS_PER_ADDRESS=2" in done.stdout


def test_warmup_must_leave_messages_to_measure(capsys: pytest.CaptureFixture[str]) -> None:
    assert lessonbot("bench", "pipeline", "--messages", "2", "--warmup", "2", "--targets", "echo") == 2
    assert "--warmup 2 leaves nothing to measure with --messages 2" in capsys.readouterr().err


def test_unknown_target_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert lessonbot("bench", "pipeline", "--targets", "echo,mysql") == 2
    assert "unknown target mysql" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


@pytest.mark.slow
def test_bench_memory_measures_the_core_over_its_conversations(tmp_path: Path) -> None:
    results_file = tmp_path / "memory.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", "memory", "--conversations", "30", "--json", str(results_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "KB a conversation" in done.stdout
    report = json.loads(results_file.read_text())
    assert report["conversations"] == 30 and report["messages"] == 30
    assert report["memory_kb"]["before"] > 10_000 and report["memory_kb"]["after"] > 0  # a Python process: MBs
    assert report["kb_per_conversation"] >= 0 and report["cpu_ms_per_message"] > 0
    assert report["messages_per_s"] > 0


@pytest.mark.slow
def test_bench_memory_lesson_turns_go_through_a_lesson_and_its_quiz_beside_help(tmp_path: Path) -> None:
    results_file = tmp_path / "turns.json"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", "memory", "--turn", "lesson", "--conversations", "2",
         "--course", str(PROJECT_ROOT / "courses" / "sample"), "--json", str(results_file)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "quiz answer (state + outbox + FSRS card)" in done.stdout and "2.5 ms" in done.stdout
    report = json.loads(results_file.read_text())
    assert report["lessons_done"] == 2  # every conversation's three answers reached "Lesson done"
    turns = report["turns"]
    assert [turns[name]["messages"] for name in ("help", "part", "answer")] == [2, 6, 6]
    assert all(turn["cpu_ms_per_message"] > 0 and turn["messages_per_s"] > 0 for turn in turns.values())


def test_bench_memory_lesson_turns_need_a_course(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lessonbot("bench", "memory", "--turn", "lesson", "--course", str(tmp_path)) == 2
    assert "is not a course folder" in capsys.readouterr().err
