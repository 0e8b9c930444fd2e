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
         "--json", str(results_file)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "Lessonbot / bare python-telegram-bot:" in done.stdout and "(target: 2x" in done.stdout

    report = json.loads(results_file.read_text())
    results = {result["target"]: result for result in report["results"]}
    assert list(results) == ["lessonbot", "ptb"]
    for result in results.values():
        assert (result["status"], result["messages"], result["errors"]) == ("ok", 4, {}), result  # 2 x (3 - 1)
        assert result["sends_per_reply"] >= 1 and 0 < result["round_trip_ms"]["p50"] <= result["round_trip_ms"]["p99"]
    assert report["ratio"] > 0

