"""`lessonbot bench telegram`: the real command with tiny numbers, both servers in their own processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_update_gets_its_reply_from_lessonbot_and_the_bare_application(tmp_path: Path) -> None:
    results_file = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", "telegram", "--learners", "2", "--messages", "3", "--warmup", "1",
         "--rounds", "2", "--json", str(results_file)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "Lessonbot / bare python-telegram-bot:" in done.stdout and "the median of 2 rounds" in done.stdout
    assert "(target: 2x" not in done.stdout and "; target: 2x)" in done.stdout

    report = json.loads(results_file.read_text())
    assert [(result["round"], result["target"]) for result in report["results"]] == [
        (1, "lessonbot"), (1, "ptb"), (2, "lessonbot"), (2, "ptb")]  # alternating, each round on a fresh server
    for result in report["results"]:
        assert (result["status"], result["messages"], result["errors"]) == ("ok", 4, {}), result  # 2 x (3 - 1)
        assert result["sends_per_reply"] >= 1 and 0 < result["round_trip_ms"]["p50"] <= result["round_trip_ms"]["p99"]
    assert len(report["ratios"]) == 2 and report["ratio"] == min(report["ratios"])  # lower middle of two

