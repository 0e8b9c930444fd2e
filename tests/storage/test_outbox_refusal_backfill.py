"""Migration 0034 reads the refusal of the dead letters written before it from their text (Slack's error code,
Twilio's error number), so what decides by it (a Slack team's lessons turned off for an archived channel) reads an old
dead letter as a new one; a dead letter with no such text, or a reply not dead, gets none. On SQLite and PostgreSQL,
from a database downgraded with rows (which also shows the migrations after 0033 go down)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from storage.db import make_sync_engine
from storage.migrate import alembic_config, upgrade

ROWS = {  # id: (channel, status, last_error) → the refusal expected
    1: (("slack", "dead", "Slack refused the message: is_archived"), "is_archived"),
    2: (("slack", "dead", "Slack refused the message: restricted_action_read_only_channel (HTTP 200)"),
        "restricted_action_read_only_channel"),
    3: (("whatsapp", "dead", "Twilio error 21211 (HTTP 400): Invalid 'To' Phone Number"), "21211"),
    4: (("slack", "dead", "gave up after 8 tries: Slack answered 503"), None),
    5: (("slack", "pending", "Slack refused the message: is_archived"), None),
    6: (("telegram", "dead", "Telegram refused the message: Bad Request: chat not found"), None),
}


def test_the_dead_letters_from_before_0034_keep_the_platforms_refusal(fresh_url: str) -> None:
    command.downgrade(alembic_config(fresh_url), "0033")
    engine = make_sync_engine(fresh_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO conversations (id, channel, chat_id, state, created_at) "
                "VALUES (1, 'slack', 'T01:C02', '{}', CURRENT_TIMESTAMP)"))
            for row_id, ((channel, status, error), _refusal) in ROWS.items():
                connection.execute(text(
                    "INSERT INTO outbox_messages (id, conversation_id, channel, chat_id, payload, status, attempts, "
                    "next_attempt_at, last_error, idempotency_key, created_at) VALUES (:id, 1, :channel, 'T01:C02', "
                    "'{\"kind\": \"text\", \"text\": \"Lesson\"}', :status, 1, CURRENT_TIMESTAMP, :error, :key, "
                    "CURRENT_TIMESTAMP)"),
                    {"id": row_id, "channel": channel, "status": status, "error": error, "key": f"k-{row_id}"})
    finally:
        engine.dispose()
    upgrade(fresh_url)
    engine = make_sync_engine(fresh_url)
    try:
        with engine.connect() as connection:
            found = dict(connection.execute(text("SELECT id, refusal FROM outbox_messages ORDER BY id")).all())
    finally:
        engine.dispose()
    assert found == {row_id: refusal for row_id, (_row, refusal) in ROWS.items()}
