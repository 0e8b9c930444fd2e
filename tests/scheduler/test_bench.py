"""`lessonbot bench scheduler` with small numbers: the real command, its stand-ins, its checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_scheduler_bench_plans_a_day_and_broadcasts_with_nothing_lost_or_doubled(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", "scheduler", "--learners", "300", "--recipients", "45",
         "--database", "sqlite", "--json", str(results)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT),
                           "SAMPLE_COURSE_DIR": str(PROJECT_ROOT / "courses" / "sample")},
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gave up" not in done.stderr, done.stderr
    report = json.loads(results.read_text())
    plan = report["planning"]
    assert plan["runs"] == 1440 and plan["lessons_due"] == plan["expected"] > 50
    assert plan["missing"] == plan["doubled"] == plan["unexpected"] == 0
    assert plan["quiet_runs"] > 0 and plan["ms_per_quiet_run_p50"] > 0 and plan["ms_per_busiest_run_p50"] > 0
    assert plan["backfill_seconds"] > 0
    assert {b["platform"] for b in report["broadcasts"]} == {"telegram", "whatsapp"}
    for broadcast in report["broadcasts"]:
        assert broadcast["sent"] == broadcast["queued"] == 45
        assert broadcast["duplicates"] == broadcast["losses"] == 0
        assert broadcast["seconds"] >= 0.9 * (45 - broadcast["rate_per_second"]) / broadcast["rate_per_second"]
        assert broadcast["busiest_second"] <= broadcast["rate_per_second"]  # counted where the stand-in received them
    assert "Broadcast to 45 on telegram at 30/s" in done.stdout
