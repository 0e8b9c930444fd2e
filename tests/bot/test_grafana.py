"""docs/grafana/lessonbot.json and docs/admin.md stay true to the metrics /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.observability import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\blessonbot_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def served() -> set[str]:
    return {metric.name for metric in REGISTRY.collect()}


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in served():
            return name[: -len(suffix)]
    return name


def test_the_grafana_dashboard_uses_only_metrics_we_serve_and_shows_what_operators_watch():
    dashboard = json.loads((ROOT / "docs" / "grafana" / "lessonbot.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {base(name) for expr in expressions for name in METRIC.findall(expr)}
    assert used and used <= served(), used - served()
    for needed in ("lessonbot_delivery_seconds", "lessonbot_outbox_depth", "lessonbot_send_failures",
                   "lessonbot_processing_seconds", "lessonbot_model_tokens_today"):
        assert needed in used, needed


def test_every_metric_is_documented():
    documented = set(METRIC.findall((ROOT / "docs" / "admin.md").read_text()))
    assert served() <= documented, served() - documented
