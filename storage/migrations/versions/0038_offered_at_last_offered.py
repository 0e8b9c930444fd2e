"""offered_choices.offered_at: when a choice was last offered (to within a day, storage.outbox.OFFER_REFRESH), where
it said when it was first offered; the prune lets a choice go once no kept reply of its chat shows it
(storage.outbox.choices_offered_before). A choice offered before may have been offered again on any reply of its chat
since: it is taken as offered at its chat's newest reply, so it is kept as long as that reply could show it

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-11 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = "0009"  # offered_choices


def upgrade() -> None:
    # One read of the outbox, grouped by chat (it has no index by chat alone), rather than one a choice.
    op.execute(
        "UPDATE offered_choices SET offered_at = newest.created_at "
        "FROM (SELECT conversation_id, max(created_at) AS created_at FROM outbox_messages GROUP BY conversation_id) "
        "AS newest "
        "WHERE newest.conversation_id = offered_choices.conversation_id AND newest.created_at > offered_choices.offered_at"
    )


def downgrade() -> None:
    pass  # (a choice stays dated at its last offer, which the rule before reads as its first)
