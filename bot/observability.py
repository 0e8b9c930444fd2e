"""Logs and metrics.

Logs carry the conversation id of the work in hand (a context variable set by the worker and the dispatcher): JSON
lines for a log collector, or readable lines for a person at a terminal (`LOG_FORMAT=auto`, the default, picks by
whether stderr is a terminal). Message text and secrets are never logged at INFO; DEBUG may include text for local
troubleshooting.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TextIO, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric as MetricFamily

conversation_id_var: ContextVar[int | None] = ContextVar("conversation_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, conversation_id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        conversation_id = conversation_id_var.get()
        if conversation_id is not None:
            entry["conversation_id"] = conversation_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        conversation_id = conversation_id_var.get()
        prefix = f"[conversation {conversation_id}] " if conversation_id is not None else ""
        record.msg = f"{prefix}{record.msg}"
        try:
            return super().format(record)
        finally:
            record.msg = record.msg[len(prefix) :]


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes, not the one there when logging was set up (a test
    runner, or an embedding program, may have swapped and closed that one since)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "auto", *, stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr): `fmt` is json, text, or auto (text on a terminal, JSON anywhere else)."""
    if fmt == "auto":
        fmt = "text" if (stream or sys.stderr).isatty() else "json"
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request lines of the HTTP clients would log URLs that carry bot tokens (Telegram puts it in the path); the
    # scheduler library's own lines (jobs added, started) are said once by scheduler/clock.py, with what matters.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "aiosqlite", "alembic", "telegram", "slack_bolt", "twilio",
                  "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


# Metrics live in one registry of their own, so tests and embedded uses never collide with the global one.
# docs/admin.md lists them by group (messages, processing, delivery, queues, the model), and docs/grafana/
# lessonbot.json is a Grafana dashboard built on them.
REGISTRY = CollectorRegistry()

# messages

MESSAGES_IN = Counter("lessonbot_messages_in", "Inbound messages recorded", ["channel"], registry=REGISTRY)
DUPLICATES_IN = Counter(
    "lessonbot_duplicate_deliveries", "Inbound deliveries ignored as duplicates", ["channel"], registry=REGISTRY
)
MESSAGES_OUT = Counter("lessonbot_messages_out", "Replies the platform accepted", ["channel"], registry=REGISTRY)
# processing
PROCESSING_SECONDS = Histogram(
    "lessonbot_processing_seconds",
    "Time from recording an inbound message to committing its replies",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
# delivery
SEND_FAILURES = Counter(
    "lessonbot_send_failures", "Failed send attempts, by kind: rate_limited (a 429), transient, permanent",
    ["channel", "kind"], registry=REGISTRY
)
DELIVERY_SECONDS = Histogram(
    "lessonbot_delivery_seconds",
    "Time from a reply being written to the outbox to the platform accepting it",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
    registry=REGISTRY,
)

Metric = TypeVar("Metric", Counter, Histogram)
_CHILDREN: dict[tuple[Any, str], Any] = {}


def for_channel(metric: Metric, channel: str) -> Metric:
    """`metric.labels(channel)`, found once for each channel: `labels()` takes a lock and builds its key on each call,
    and the message path counts a few metrics a message."""
    child = _CHILDREN.get((metric, channel))
    if child is None:
        child = _CHILDREN[(metric, channel)] = metric.labels(channel)
    return child


# queues (set when /metrics is read, from the database every process shares)
OUTBOX_DEPTH = Gauge("lessonbot_outbox_depth", "Outbox rows by status", ["status"], registry=REGISTRY)
INBOUND_PENDING = Gauge("lessonbot_inbound_pending", "Inbound messages not yet processed", registry=REGISTRY)
# the model (set when /metrics is read, counted in the database over every process)
MODEL_CALLS_TODAY = Gauge("lessonbot_model_calls_today", "Model calls of all learners so far this UTC day",
                          registry=REGISTRY)
MODEL_TOKENS_TODAY = Gauge("lessonbot_model_tokens_today", "Model tokens of all learners so far this UTC day",
                           registry=REGISTRY)

# The gauges read from the database at each scrape (`bot.app.exposition`).
READ_FROM_DATABASE = (OUTBOX_DEPTH, INBOUND_PENDING, MODEL_CALLS_TODAY, MODEL_TOKENS_TODAY)


class WithoutDatabaseGauges:
    """REGISTRY's metrics but the gauges read from the database: what a scrape shows when it could not read them,
    rather than the values of the last scrape that could (Prometheus then has no sample of them, as for a target
    that is down, instead of a queue that seems to stand still)."""

    def __init__(self) -> None:
        self.left_out = {family.name for gauge in READ_FROM_DATABASE for family in gauge.describe()}

    def collect(self) -> Iterator[MetricFamily]:
        return (family for family in REGISTRY.collect() if family.name not in self.left_out)
