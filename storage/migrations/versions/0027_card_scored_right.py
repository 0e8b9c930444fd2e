"""question_cards.scored_right: whether a question counted right at the first try in its lesson's score, set when
the lesson was finished, so the pass mark counts what the learner scored then, whatever a later review or a
re-import does; cards of lessons finished before are filled in from what the lesson's score says

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

# The cards of each lesson a learner finished (their question's lesson, the learner's progress in it done).
_OF_FINISHED_LESSONS = (
    "FROM lesson_progress p JOIN questions q ON q.lesson_id = p.lesson_id "
    "WHERE p.completed_at IS NOT NULL AND q.id = question_cards.question_id AND p.user_id = question_cards.user_id"
)


def upgrade() -> None:
    with op.batch_alter_table("question_cards") as batch:
        batch.add_column(sa.Column("scored_right", sa.Boolean(), nullable=True))
    # A card never answered wrong was right at the first try, as the lesson's end counted it; one answered wrong
    # since may have been right then (a review later went wrong): first marked not right, then the lesson's score
    # (its share right) tells how many of its cards were, and the likeliest of them are marked right up to that.
    op.execute(
        "UPDATE question_cards SET scored_right = CASE WHEN attempts > 0 AND correct = attempts THEN "
        f"{_true()} ELSE {_false()} END WHERE EXISTS (SELECT 1 {_OF_FINISHED_LESSONS})"
    )
    _reconcile_with_lesson_scores()


def _true() -> str:
    return "TRUE" if op.get_bind().dialect.name == "postgresql" else "1"


def _false() -> str:
    return "FALSE" if op.get_bind().dialect.name == "postgresql" else "0"


def _reconcile_with_lesson_scores() -> None:
    """One statement: for each finished lesson whose cards marked right fall short of its score's share, the cards
    answered right at least once since, likeliest first (the highest share right, then the oldest), up to the
    shortfall. (Rounding a half is the database's: the backfill of scores kept as shares is as near as they allow.)"""
    true, false = _true(), _false()
    op.execute(
        f"UPDATE question_cards SET scored_right = {true} WHERE id IN ("
        " SELECT id FROM ("
        "  SELECT c.id AS id, short.missing AS missing, ROW_NUMBER() OVER ("
        "   PARTITION BY c.user_id, q.lesson_id ORDER BY c.correct * 1.0 / c.attempts DESC, c.id) AS place"
        "  FROM question_cards c JOIN questions q ON q.id = c.question_id"
        "  JOIN ("
        "   SELECT p.user_id AS user_id, p.lesson_id AS lesson_id,"
        f"   ROUND(p.score * COUNT(c2.id)) - SUM(CASE WHEN c2.scored_right = {true} THEN 1 ELSE 0 END) AS missing"
        "   FROM lesson_progress p JOIN questions q2 ON q2.lesson_id = p.lesson_id"
        "   JOIN question_cards c2 ON c2.question_id = q2.id AND c2.user_id = p.user_id"
        "   WHERE p.completed_at IS NOT NULL AND p.score IS NOT NULL"
        "   GROUP BY p.user_id, p.lesson_id, p.score"
        "  ) short ON short.user_id = c.user_id AND short.lesson_id = q.lesson_id"
        f"  WHERE c.scored_right = {false} AND c.correct > 0 AND short.missing > 0"
        " ) ranked WHERE place <= missing)"
    )


def downgrade() -> None:
    with op.batch_alter_table("question_cards") as batch:
        batch.drop_column("scored_right")
