"""`lessonbot bench channels`: the real command with tiny numbers, real servers in their own processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.channels import busiest_second

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_busiest_second_counts_arrivals_within_any_one_second_window() -> None:
    assert busiest_second([]) == 0
    assert busiest_second([5.0]) == 1
    assert busiest_second([0.0, 0.5, 0.99, 1.0, 1.2, 3.0]) == 4  # 0.5, 0.99, 1.0 and 1.2 lie within 0.7 s
    assert busiest_second([0.0, 1.0, 2.0, 3.0]) == 1  # one a second exactly: never two in a window


@pytest.mark.slow
def test_every_channel_acknowledges_every_signed_request_and_the_outbox_keeps_the_limits(tmp_path: Path) -> None:
    results_file = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bot.cli", "bench", "channels", "--requests", "24", "--senders", "6",
            "--concurrency", "4", "--outbound-scale", "0.2", "--json", str(results_file),
        ],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "Lessonbot / bare python-telegram-bot:" in done.stdout

    report = json.loads(results_file.read_text())
    webhooks = {result["target"]: result for result in report["webhooks"]}
    assert list(webhooks) == ["telegram", "ptb", "whatsapp", "slack"]
    for result in webhooks.values():
        # every request verified and acknowledged: a signing mistake would show up as 401/403 errors here
        assert (result["status"], result["acknowledged"], result["errors"]) == ("ok", 24, {}), result
        assert 0 < result["ack_ms"]["p50"] <= result["ack_ms"]["p99"]
    assert set(report["ratio"]) == {"requests_per_s", "ack_p50", "ack_p99"}

    outbound = {result["case"]: result for result in report["outbound"]}
    assert all(result["status"] == "ok" and result["sent"] == result["messages"] for result in outbound.values())
    # A broken limiter would deliver a whole batch at once; a working one can be off by the jitter of the trips (a
    # send started 1.05 s after another arrives a few milliseconds closer), so a tenth more is tolerated.
    assert outbound["Telegram, many chats"]["busiest_second"] <= 33
    for one_chat in ("Telegram, one chat", "Slack, one channel"):
        result = outbound[one_chat]
        assert result["messages"] == 3 and result["busiest_chat_second"] == 1
        assert result["seconds"] >= 2.0  # three messages one second apart at least
    assert outbound["WhatsApp, one sender"]["busiest_second"] <= 88


def test_a_bad_option_is_refused_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import build_parser
    from bot.config import load_settings

    args = build_parser().parse_args(["bench", "channels", "--channels", "telegram,fax"])
    assert args.func(load_settings(_env_file=None), args) == 2
    assert "unknown channel fax; choose from telegram, whatsapp, slack" in capsys.readouterr().err
